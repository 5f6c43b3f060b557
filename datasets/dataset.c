/* dataset.c -- dataset_open's name table, shared helpers (sizes, file checks, byte<->float), the seeded
 * validation split, per-channel statistics and PNG export. See dataset.h; formats in idx.c, cifar.c,
 * png.c, pngdir.c, synthetic.c.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/core.h"
#include "datasets/dataset.h"
#include "datasets/formats.h"
#include "datasets/png.h"

/* ---- helpers ---- */
int mul_capped(int64_t a, int64_t b, int64_t lim, int64_t *out) {
    CHECK(a >= 0 && b >= 0 && lim >= 0);
    if (a != 0 && b > lim / a) return -1;
    if (a * b > lim) return -1;
    *out = a * b;
    return 0;
}

static float g_byte_to_unit[256];
__attribute__((constructor)) static void init_byte_table(void) {
    for (int k = 0; k < 256; k++) g_byte_to_unit[k] = (float)k / 255.0f;
}
const float *const byte_to_unit = g_byte_to_unit;

unsigned char unit_to_byte(float v) {
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v >= 1.0f) return 255;
    return (unsigned char)lrintf(v * 255.0f);
}

void dataset_alloc(Dataset *d, int n, int c, int h, int w, int classes) {
    memset(d, 0, sizeof *d);
    CHECK(n >= 0 && c > 0 && h > 0 && w > 0 && classes > 0 && classes <= DATASET_MAX_CLASSES);
    d->n = n; d->c = c; d->h = h; d->w = w; d->classes = classes;
    d->x = xmalloc((size_t)n * c * h * w * sizeof(float));
    advise_huge(d->x, (size_t)n * c * h * w * sizeof(float)); /* batches read it at random */
    d->y = xmalloc((size_t)n * sizeof(int32_t));
}

int file_check_readable(const char *path, const char *hint) {
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        if (e == ENOENT)
            return err_set("%s: no such file%s%s", path, hint ? "; " : "", hint ? hint : "");
        return err_set("%s: cannot access: %s; check the path and its permissions", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode))
        return err_set("%s: is a directory, expected a file; pass the file itself (or its folder as "
                       "--data-dir)", path);
    if (!S_ISREG(st.st_mode))
        return err_set("%s: is not a regular file; pass a regular file", path);
    if (access(path, R_OK) != 0)
        return err_set("%s: cannot read: %s; check its permissions", path, strerror(errno));
    return 0;
}

int file_read_all(const char *path, size_t max, unsigned char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    if (file_check_readable(path, NULL) != 0) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set("%s: cannot open: %s; check its permissions", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fclose(f);
        return err_set("%s: cannot stat: %s", path, strerror(errno));
    }
    if ((uint64_t)st.st_size > max) {
        fclose(f);
        return err_set("%s: %lld bytes is larger than the %zu-byte limit for this kind of file; is it the "
                       "right file?", path, (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = xmalloc(n + 1);
    size_t got = fread(b, 1, n + 1, f);
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) {
        free(b);
        return err_set("%s: read error: %s; check the file and the disk", path, strerror(e));
    }
    if (got != n) {
        free(b);
        return err_set("%s: changed size while being read (%zu bytes, expected %zu); retry", path, got, n);
    }
    *buf = b;
    *len = n;
    return 0;
}

int dataset_split_parse(const char *s) {
    if (str_eq(s, "train")) return SPLIT_TRAIN;
    if (str_eq(s, "test")) return SPLIT_TEST;
    return -1;
}

/* ---- IDX family ---- */
static const char *const k_fashion[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
static const char *const k_kmnist[10] = {"o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"};

typedef struct IdxSet {
    const char *name;    /* dataset name, or "emnist-<sub>" */
    const char *dirname; /* under /usr/share/datasets */
    const char *prefix;  /* file prefix before "train-images-idx3-ubyte" */
    int classes, label_offset, transpose;
    const char *install; /* how to get it */
} IdxSet;

static const IdxSet k_idx_sets[] = {
    {"fashion-mnist", "fashion-mnist", "", 10, 0, 0,
     "install the Debian package dataset-fashion-mnist (make deps-build) or pass --data-dir DIR"},
    {"mnist", "mnist", "", 10, 0, 0, "put the MNIST files there or pass --data-dir DIR"},
    {"kmnist", "kmnist", "", 10, 0, 0, "put the Kuzushiji-MNIST files there or pass --data-dir DIR"},
    /* EMNIST (Cohen et al. 2017): files emnist-<sub>-train-images-idx3-ubyte.gz; images stored transposed;
     * "letters" labels are 1..26. */
    {"emnist-balanced", "emnist", "emnist-balanced-", 47, 0, 1, "put the EMNIST gzip files there or pass --data-dir DIR"},
    {"emnist-byclass", "emnist", "emnist-byclass-", 62, 0, 1, "put the EMNIST gzip files there or pass --data-dir DIR"},
    {"emnist-bymerge", "emnist", "emnist-bymerge-", 47, 0, 1, "put the EMNIST gzip files there or pass --data-dir DIR"},
    {"emnist-digits", "emnist", "emnist-digits-", 10, 0, 1, "put the EMNIST gzip files there or pass --data-dir DIR"},
    {"emnist-letters", "emnist", "emnist-letters-", 26, 1, 1, "put the EMNIST gzip files there or pass --data-dir DIR"},
    {"emnist-mnist", "emnist", "emnist-mnist-", 10, 0, 1, "put the EMNIST gzip files there or pass --data-dir DIR"},
};

static void set_class_names_idx(const IdxSet *s, Dataset *d) {
    static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static const char merged[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"; /* balanced, bymerge */
    for (int k = 0; k < d->classes; k++) {
        char *dst = d->class_names[k];
        if (str_eq(s->name, "fashion-mnist")) snprintf(dst, 32, "%s", k_fashion[k]);
        else if (str_eq(s->name, "kmnist")) snprintf(dst, 32, "%s", k_kmnist[k]);
        else if (str_eq(s->name, "emnist-letters")) snprintf(dst, 32, "%c", 'A' + k);
        else if (str_eq(s->name, "emnist-byclass")) snprintf(dst, 32, "%c", alnum[k]);
        else if (s->classes == 47) snprintf(dst, 32, "%c", merged[k]);
        else snprintf(dst, 32, "%d", k);
    }
}

/* First existing candidate among DIR/<prefix><base>.gz, DIR/<prefix><base>, DIR/gzip/<...>; when none
 * exists, the first candidate (so the message names the expected place). */
static void idx_find(const char *dir, const char *prefix, const char *base, char *out, size_t n) {
    static const char *const fmts[] = {"%s/%s%s.gz", "%s/%s%s", "%s/gzip/%s%s.gz", "%s/gzip/%s%s"};
    for (size_t i = 0; i < ARRAY_LEN(fmts); i++) {
        snprintf(out, n, fmts[i], dir, prefix, base);
        if (access(out, F_OK) == 0) return;
    }
    snprintf(out, n, fmts[0], dir, prefix, base);
}

static int idx_open(const IdxSet *s, const char *data_dir, int split, Dataset *out) {
    char dir[512], ip[1024], lp[1024], hint[600];
    if (data_dir) snprintf(dir, sizeof dir, "%s", data_dir);
    else snprintf(dir, sizeof dir, "/usr/share/datasets/%s", s->dirname);
    const char *sp = split == SPLIT_TRAIN ? "train" : "t10k";
    if (s->prefix[0]) sp = split == SPLIT_TRAIN ? "train" : "test";
    char base[64];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", sp);
    idx_find(dir, s->prefix, base, ip, sizeof ip);
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", sp);
    idx_find(dir, s->prefix, base, lp, sizeof lp);
    snprintf(hint, sizeof hint, "%s needs it: %s", s->name, s->install);
    if (file_check_readable(ip, hint) != 0 || file_check_readable(lp, hint) != 0) return -1;
    IdxArray img, lab;
    unsigned char *ib = NULL, *lb = NULL;
    int rc = -1;
    if (idx_read_file(ip, &img, &ib) != 0) goto done;
    if (idx_read_file(lp, &lab, &lb) != 0) goto done;
    if (idx_make_dataset(&img, ip, &lab, lp, s->classes, s->label_offset, s->transpose, out) != 0) goto done;
    snprintf(out->source, sizeof out->source, "%.254s,%.254s", ip, lp);
    set_class_names_idx(s, out);
    rc = 0;
done:
    free(ib);
    free(lb);
    return rc;
}

/* ---- CIFAR ---- */
static const char *const k_cifar10[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                          "dog", "frog", "horse", "ship", "truck"};
static const char *const k_cifar100[] = {
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle",
    "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon",
    "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
    "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm"};
static const char *const k_cifar100_coarse[] = {
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2"};
_Static_assert(ARRAY_LEN(k_cifar100) == 100, "CIFAR-100 has 100 fine classes");
_Static_assert(ARRAY_LEN(k_cifar100_coarse) == 20, "CIFAR-100 has 20 coarse classes");

static int cifar_open(int kind, const char *data_dir, int split, Dataset *out) {
    const char *dflt = kind == CIFAR_10 ? "/usr/share/datasets/cifar10" : "/usr/share/datasets/cifar100";
    const char *sub = kind == CIFAR_10 ? "cifar-10-batches-bin" : "cifar-100-binary";
    const char *files10[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                             "data_batch_5.bin"};
    const char *test10[] = {"test_batch.bin"}, *train100[] = {"train.bin"}, *test100[] = {"test.bin"};
    const char **files;
    int nfiles;
    if (kind == CIFAR_10) { files = split == SPLIT_TRAIN ? files10 : test10; nfiles = split == SPLIT_TRAIN ? 5 : 1; }
    else { files = split == SPLIT_TRAIN ? train100 : test100; nfiles = 1; }
    char dir[512], path[1100];
    snprintf(dir, sizeof dir, "%s", data_dir ? data_dir : dflt);
    /* Accept the folder the official archive unpacks to, inside the data dir. */
    snprintf(path, sizeof path, "%s/%s", dir, files[0]);
    if (access(path, F_OK) != 0) {
        char alt[1100];
        snprintf(alt, sizeof alt, "%s/%s/%s", dir, sub, files[0]);
        if (access(alt, F_OK) == 0) snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s", sub);
    }
    const char *what = kind == CIFAR_10 ? "CIFAR-10" : "CIFAR-100";
    unsigned char *bufs[5] = {0};
    size_t lens[5] = {0};
    long nrec[5] = {0}, total = 0;
    int rc = -1;
    for (int i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        char hint[1024];
        snprintf(hint, sizeof hint, "download the %s binary version (%s) from "
                 "https://www.cs.toronto.edu/~kriz/cifar.html and unpack it into %s, or pass --data-dir DIR",
                 what, kind == CIFAR_10 ? "cifar-10-binary.tar.gz" : "cifar-100-binary.tar.gz", dir);
        if (file_check_readable(path, hint) != 0) goto done;
        if (file_read_all(path, (size_t)1 << 30, &bufs[i], &lens[i]) != 0) goto done;
        if ((nrec[i] = cifar_check_mem(bufs[i], lens[i], path, kind)) < 0) goto done;
        total += nrec[i];
    }
    if (total > DATASET_MAX_SAMPLES) { err_set("%s: too many records", dir); goto done; }
    dataset_alloc(out, (int)total, 3, 32, 32, kind == CIFAR_10 ? 10 : kind == CIFAR_100_FINE ? 100 : 20);
    long at = 0;
    for (int i = 0; i < nfiles; i++) {
        cifar_fill(bufs[i], nrec[i], kind, out->x + (size_t)at * 3072, out->y + at);
        at += nrec[i];
    }
    for (int k = 0; k < out->classes; k++)
        snprintf(out->class_names[k], 32, "%s",
                 kind == CIFAR_10 ? k_cifar10[k] : kind == CIFAR_100_FINE ? k_cifar100[k] : k_cifar100_coarse[k]);
    snprintf(out->source, sizeof out->source, "%.480s/%s%s", dir, files[0], nfiles > 1 ? " ..." : "");
    rc = 0;
done:
    for (int i = 0; i < 5; i++) free(bufs[i]);
    return rc;
}

/* ---- the name table ---- */
int dataset_open(const char *name, const char *data_dir, int split, Dataset *out) {
    memset(out, 0, sizeof *out);
    CHECK(split == SPLIT_TRAIN || split == SPLIT_TEST);
    if (!name || !*name) return err_set("dataset: no dataset name given; use e.g. fashion-mnist");
    if (data_dir && !*data_dir) data_dir = NULL;
    int rc;
    if (strncmp(name, "png:", 4) == 0) {
        rc = pngdir_open(name + 4, split, out);
    } else if (strncmp(name, "synthetic", 9) == 0 && (name[9] == 0 || name[9] == ':')) {
        rc = synthetic_open(name + 9, split, out);
    } else if (str_eq(name, "cifar10") || str_eq(name, "cifar100") || str_eq(name, "cifar100-coarse")) {
        int kind = str_eq(name, "cifar10") ? CIFAR_10 : str_eq(name, "cifar100") ? CIFAR_100_FINE : CIFAR_100_COARSE;
        rc = cifar_open(kind, data_dir, split, out);
    } else {
        const IdxSet *s = NULL;
        for (size_t i = 0; i < ARRAY_LEN(k_idx_sets); i++)
            if (str_eq(name, k_idx_sets[i].name)) s = &k_idx_sets[i];
        if (!s) {
            if (str_eq(name, "emnist"))
                return err_set("emnist: choose a subset: emnist-balanced, emnist-byclass, emnist-bymerge, "
                               "emnist-digits, emnist-letters or emnist-mnist");
            return err_set("%s: unknown dataset; use fashion-mnist, mnist, kmnist, emnist-<subset>, cifar10, "
                           "cifar100, cifar100-coarse, png:DIR or synthetic[:N[:CxHxW[:K]]]", name);
        }
        rc = idx_open(s, data_dir, split, out);
    }
    if (rc != 0) {
        dataset_close(out);
        return -1;
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    return 0;
}

void dataset_close(Dataset *d) {
    if (!d) return;
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

int dataset_dim(const Dataset *d) { return d->c * d->h * d->w; }

/* ---- class subsets ---- */

int dataset_classes_parse(const char *list, int classes, int *sel, int *nsel, char *canon, size_t ncanon) {
    *nsel = 0;
    if (!list || !*list) return err_set("--classes: empty list; give classes like 0-4 or 5,6,7,8,9");
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    uint8_t seen[4096] = {0};
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(tok, '-');
        long a, b;
        if (dash) *dash = 0;
        if (parse_int(tok, 0, 4095, &a) < 0 || (dash && parse_int(dash + 1, 0, 4095, &b) < 0))
            return err_set("--classes %s: '%s%s%s' is not a class or a range a-b of classes", list, tok, dash ? "-" : "",
                           dash ? dash + 1 : "");
        if (!dash) b = a;
        if (b < a) return err_set("--classes %s: the range %ld-%ld runs backwards", list, a, b);
        for (long c = a; c <= b; c++) {
            if (classes > 0 && c >= classes)
                return err_set("--classes %s: class %ld does not exist (the dataset has classes 0..%d)", list, c, classes - 1);
            if (seen[c]) return err_set("--classes %s: class %ld is listed twice", list, c);
            seen[c] = 1;
            sel[(*nsel)++] = (int)c;
        }
    }
    if (*nsel < 2) return err_set("--classes %s: a task needs at least 2 classes", list);
    /* canonical text: runs of consecutive classes as a-b, in the order given */
    size_t l = 0;
    canon[0] = 0;
    for (int i = 0; i < *nsel;) {
        int j = i;
        while (j + 1 < *nsel && sel[j + 1] == sel[j] + 1) j++;
        if (j > i) l += (size_t)snprintf(canon + l, ncanon > l ? ncanon - l : 0, "%s%d-%d", i ? "," : "", sel[i], sel[j]);
        else l += (size_t)snprintf(canon + l, ncanon > l ? ncanon - l : 0, "%s%d", i ? "," : "", sel[i]);
        i = j + 1;
    }
    return 0;
}

int dataset_select_classes(Dataset *d, const char *list) {
    int sel[4096], nsel;
    char canon[256];
    if (dataset_classes_parse(list, d->classes, sel, &nsel, canon, sizeof canon) < 0) return -1;
    int map[4096];
    for (int c = 0; c < 4096; c++) map[c] = -1;
    for (int i = 0; i < nsel; i++) map[sel[i]] = i;
    int D = dataset_dim(d), k = 0;
    for (int i = 0; i < d->n; i++) { /* keep the order of the examples; relabel by position in the list */
        int nl = d->y[i] >= 0 && d->y[i] < 4096 ? map[d->y[i]] : -1;
        if (nl < 0) continue;
        if (k != i) memmove(d->x + (size_t)k * D, d->x + (size_t)i * D, sizeof(float) * D);
        d->y[k++] = nl;
    }
    if (k == 0) return err_set("%s: no example has a class in --classes %s", d->name, list);
    char names[100][32];
    memcpy(names, d->class_names, sizeof names);
    memset(d->class_names, 0, sizeof d->class_names);
    for (int i = 0; i < nsel && i < 100; i++)
        if (sel[i] < 100) memcpy(d->class_names[i], names[sel[i]], sizeof d->class_names[i]);
    d->n = k;
    d->classes = nsel;
    char base[64];
    snprintf(base, sizeof base, "%s", d->name);
    snprintf(d->name, sizeof d->name, "%.40s[%.20s]", base, canon);
    return 0;
}

int dataset_open_classes(const char *name, const char *data_dir, const char *classes, int split, Dataset *out) {
    if (dataset_open(name, data_dir, split, out) < 0) return -1;
    if (classes && *classes && dataset_select_classes(out, classes) < 0) {
        dataset_close(out);
        return -1;
    }
    return 0;
}

/* ---- split and statistics ---- */
static void dataset_take(const Dataset *src, const int *idx, int n, Dataset *dst) {
    dataset_alloc(dst, n, src->c, src->h, src->w, src->classes);
    memcpy(dst->name, src->name, sizeof dst->name);
    memcpy(dst->source, src->source, sizeof dst->source);
    memcpy(dst->class_names, src->class_names, sizeof dst->class_names);
    size_t dim = (size_t)dataset_dim(src);
    for (int i = 0; i < n; i++) {
        memcpy(dst->x + (size_t)i * dim, src->x + (size_t)idx[i] * dim, dim * sizeof(float));
        dst->y[i] = src->y[idx[i]];
    }
}

void dataset_split(const Dataset *src, int n_val, uint64_t seed, Dataset *train, Dataset *val) {
    CHECK(src && train && val && train != val);
    CHECK(n_val >= 0 && n_val <= src->n);
    int *perm = xmalloc((size_t)(src->n ? src->n : 1) * sizeof(int));
    for (int i = 0; i < src->n; i++) perm[i] = i;
    Rng r;
    rng_seed(&r, seed, RNG_SPLIT, 0);
    rng_shuffle(&r, perm, src->n);
    int n_train = src->n - n_val;
    dataset_take(src, perm, n_train, train);
    dataset_take(src, perm + n_train, n_val, val);
    free(perm);
}

void dataset_channel_stats(const Dataset *d, float *mean, float *std) {
    size_t hw = (size_t)d->h * d->w;
    for (int c = 0; c < d->c; c++) {
        double s = 0, ss = 0, cnt = (double)d->n * (double)hw;
        for (int i = 0; i < d->n; i++) {
            const float *p = d->x + ((size_t)i * d->c + c) * hw;
            for (size_t j = 0; j < hw; j++) s += p[j];
        }
        double m = cnt > 0 ? s / cnt : 0.0;
        for (int i = 0; i < d->n; i++) { /* second pass: no cancellation in E[x^2] - m^2 */
            const float *p = d->x + ((size_t)i * d->c + c) * hw;
            for (size_t j = 0; j < hw; j++) { double e = p[j] - m; ss += e * e; }
        }
        mean[c] = (float)m;
        std[c] = (float)(cnt > 0 ? sqrt(ss / cnt) : 0.0);
    }
}

/* ---- export ---- */
static int ndigits(long v) { int k = 1; while (v >= 10) { v /= 10; k++; } return k; }

/* Folder name for class k: zero-padded label so that sorted folder names are in label order, then the
 * class name with anything but [A-Za-z0-9._-] replaced by '-' ("00_T-shirt-top"). */
static void class_folder(const Dataset *d, int k, char *out, size_t n) {
    int w = ndigits(d->classes - 1);
    int len = snprintf(out, n, "%0*d", w, k);
    const char *cn = d->class_names[k];
    if (cn[0] && (size_t)len + 2 < n) {
        out[len++] = '_';
        for (const char *p = cn; *p && (size_t)len + 1 < n; p++) {
            char ch = *p;
            int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                     ch == '.' || ch == '_' || ch == '-';
            out[len++] = ok ? ch : '-';
        }
        out[len] = 0;
    }
}

/* rm -r of a tree we created ourselves (split/class/file). */
static void remove_tree(const char *path) {
    DIR *dp = opendir(path);
    if (!dp) { remove(path); return; }
    struct dirent *e;
    char sub[2048];
    while ((e = readdir(dp)) != NULL) {
        if (str_eq(e->d_name, ".") || str_eq(e->d_name, "..")) continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(sub);
        else remove(sub);
    }
    closedir(dp);
    rmdir(path);
}

int dataset_export_png(const Dataset *d, const char *dir, int split, int limit) {
    CHECK(split == SPLIT_TRAIN || split == SPLIT_TEST);
    if (d->c != 1 && d->c != 3)
        return err_set("%s: cannot export %d-channel images as PNG; only 1 (grey) or 3 (RGB) channels",
                       dir, d->c);
    const char *sname = split == SPLIT_TRAIN ? "train" : "test";
    char final[1024], tmp[1100], path[1400];
    if (strlen(dir) > 700) return err_set("%.60s...: path too long; use a shorter --png DIR", dir);
    snprintf(final, sizeof final, "%s/%s", dir, sname);
    if (access(final, F_OK) == 0)
        return err_set("%s: already exists; remove it or choose another --png DIR (export never overwrites)",
                       final);
    int n = limit > 0 && limit < d->n ? limit : d->n;
    /* The PNG loader numbers classes by sorted folder name and rejects empty folders, so every class
     * must get at least one image or the labels would not read back the same. */
    int *count = xcalloc((size_t)d->classes, sizeof(int));
    for (int i = 0; i < n; i++) {
        CHECK(d->y[i] >= 0 && d->y[i] < d->classes);
        count[d->y[i]]++;
    }
    for (int k = 0; k < d->classes; k++)
        if (count[k] == 0) {
            free(count);
            return err_set("%s: the first %d samples have no image of class %d%s%s%s; every class folder needs "
                           "at least one image to read back with the same labels: raise --limit",
                           dir, n, k, d->class_names[k][0] ? " (" : "", d->class_names[k],
                           d->class_names[k][0] ? ")" : "");
        }
    free(count);
    if (dir_create(dir) != 0) return -1;
    tmp_path(final, tmp, sizeof tmp);
    remove_tree(tmp);
    if (mkdir(tmp, 0755) != 0)
        return err_set("%s: cannot create directory: %s; check permissions", tmp, strerror(errno));
    size_t hw = (size_t)d->h * d->w;
    unsigned char *pix = xmalloc(hw * (size_t)d->c);
    int rc = -1;
    for (int k = 0; k < d->classes; k++) {
        char cf[80];
        class_folder(d, k, cf, sizeof cf);
        snprintf(path, sizeof path, "%s/%s", tmp, cf);
        if (mkdir(path, 0755) != 0) {
            err_set("%s: cannot create directory: %s; check permissions and free space", path, strerror(errno));
            goto done;
        }
    }
    int wd = ndigits(d->n > 0 ? d->n - 1 : 0);
    if (wd < 5) wd = 5;
    for (int i = 0; i < n; i++) {
        const float *x = d->x + (size_t)i * hw * d->c;
        for (size_t j = 0; j < hw; j++) /* CHW floats -> HWC bytes */
            for (int c = 0; c < d->c; c++) pix[j * d->c + c] = unit_to_byte(x[(size_t)c * hw + j]);
        int k = d->y[i];
        CHECK(k >= 0 && k < d->classes);
        char cf[80];
        class_folder(d, k, cf, sizeof cf);
        if (snprintf(path, sizeof path, "%s/%s/%0*d.png", tmp, cf, wd, i) >= (int)sizeof path) {
            err_set("%s: path too long; use a shorter --png DIR", tmp);
            goto done;
        }
        if (png_write_direct(path, pix, d->w, d->h, d->c) != 0) goto done;
    }
    sync(); /* the files are on disk before the directory appears under its final name */
    if (rename(tmp, final) != 0) {
        err_set("%s: cannot move the finished export into place: %s", final, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(pix);
    if (rc != 0) remove_tree(tmp);
    return rc;
}
