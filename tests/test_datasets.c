/* test_datasets.c -- datasets/: every format against an independent oracle, every bad input of issue 4
 * item 5 through the API (message names the file and the problem, nothing half-loaded) and through the
 * CLI (non-zero exit, one line), and the fuzz regression inputs.
 * Oracles: files generated here byte by byte with known contents (IDX, CIFAR), PNGs written here
 * directly with libpng in every colour type (not through datasets/png.c), and k/255 computed here.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/dataset.h"
#include "datasets/formats.h"
#include "datasets/png.h"
#include "harness/core.h"
#include "tests/test.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- helpers ---- */
static void tpath(char *out, size_t n, const char *rel) { snprintf(out, n, "%s/%s", test_tmpdir(), rel); }

static void mkdirs(const char *p) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", p);
    if (system(cmd) != 0) test_fail_at(__FILE__, __LINE__, "cannot mkdir %s", p);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { test_fail_at(__FILE__, __LINE__, "cannot write %s", path); return; }
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

/* An IDX file: images (n, h, w) with pixel (i, j) = (i*31 + j*7) % 256, or labels (n) = i % classes. */
static size_t make_idx(unsigned char *buf, int images, uint32_t n, uint32_t h, uint32_t w, int classes) {
    buf[0] = 0; buf[1] = 0; buf[2] = 0x08; buf[3] = images ? 3 : 1;
    put_be32(buf + 4, n);
    size_t at = 8;
    if (images) { put_be32(buf + 8, h); put_be32(buf + 12, w); at = 16; }
    size_t per = images ? (size_t)h * w : 1;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < per; j++)
            buf[at++] = images ? (unsigned char)((i * 31 + j * 7) % 256) : (unsigned char)(i % (size_t)classes);
    return at;
}

/* A fashion-mnist style folder (raw, not gzipped) with n 4x5 images; returns its path in dir. */
static void make_idx_dir(const char *rel, uint32_t n, char *dir, size_t dn) {
    tpath(dir, dn, rel);
    mkdirs(dir);
    unsigned char *b = malloc(16 + (size_t)n * 20 + 16);
    char p[1024];
    const char *sp[2] = {"train", "t10k"};
    for (int s = 0; s < 2; s++) {
        size_t len = make_idx(b, 1, n, 4, 5, 10);
        snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, sp[s]);
        write_bytes(p, b, len);
        len = make_idx(b, 0, n, 0, 0, 10);
        snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, sp[s]);
        write_bytes(p, b, len);
    }
    free(b);
}

static int is_zeroed(const Dataset *d) { return d->x == NULL && d->y == NULL && d->n == 0 && d->classes == 0; }

/* API bad-input check: dataset_open fails, the message holds every needle, the Dataset is left empty. */
static void expect_open_error(const char *name, const char *dir, int split, const char *n1, const char *n2,
                              int line) {
    Dataset d;
    memset(&d, 0x5a, sizeof d);
    err_clear();
    int rc = dataset_open(name, dir, split, &d);
    if (rc != -1) test_fail_at(__FILE__, line, "dataset_open(%s) returned %d, expected -1", name, rc);
    if (n1 && !strstr(err_msg(), n1)) test_fail_at(__FILE__, line, "expected \"%s\" in: %s", n1, err_msg());
    if (n2 && !strstr(err_msg(), n2)) test_fail_at(__FILE__, line, "expected \"%s\" in: %s", n2, err_msg());
    if (strchr(err_msg(), '\n')) test_fail_at(__FILE__, line, "message is not one line: %s", err_msg());
    if (!is_zeroed(&d)) test_fail_at(__FILE__, line, "Dataset not left empty after a failure");
    if (rc == 0) dataset_close(&d);
    err_clear();
}
#define EXPECT_OPEN_ERROR(name, dir, split, n1, n2) expect_open_error(name, dir, split, n1, n2, __LINE__)

/* CLI bad-input check: non-zero exit, exactly one output line, holding the needles. */
static int have_exe(void) { return access(test_exe(), X_OK) == 0; }
static void expect_cli_error(const char *args, const char *n1, const char *n2, int line) {
    if (!have_exe()) {
        test_fail_at(__FILE__, line, "concord binary not found at %s; build it with make concord", test_exe());
        return;
    }
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "%s %s", test_exe(), args);
    int st = test_run(cmd, out, sizeof out);
    if (st == 0 || st >= 128) test_fail_at(__FILE__, line, "exit status %d for `%s` (want 1..127): %s", st, args, out);
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    if (lines != 1) test_fail_at(__FILE__, line, "`%s` printed %d lines, want 1: %s", args, lines, out);
    if (n1 && !strstr(out, n1)) test_fail_at(__FILE__, line, "expected \"%s\" in: %s", n1, out);
    if (n2 && !strstr(out, n2)) test_fail_at(__FILE__, line, "expected \"%s\" in: %s", n2, out);
}
#define EXPECT_CLI_ERROR(args, n1, n2) expect_cli_error(args, n1, n2, __LINE__)

/* Number of samples where a and b differ (shape mismatch counts as all). */
static long ds_mismatches(const Dataset *a, const int *order_a, const Dataset *b) {
    if (a->c != b->c || a->h != b->h || a->w != b->w) return b->n ? b->n : 1;
    long bad = 0;
    size_t dim = (size_t)dataset_dim(a);
    for (int i = 0; i < b->n; i++) {
        int j = order_a ? order_a[i] : i;
        if (j >= a->n || a->y[j] != b->y[i] || memcmp(a->x + (size_t)j * dim, b->x + (size_t)i * dim, dim * sizeof(float)) != 0)
            bad++;
    }
    return bad;
}

/* A PNG written straight through libpng, any colour type and depth; samples[] are 16-bit-capable. */
static void write_png_trns(const char *path, int w, int h, int color, int depth, const unsigned char *rows_data,
                           size_t rowbytes, const png_color *palette, int npal, const unsigned char *trans,
                           int ntrans, const png_color_16 *trans_color) {
    FILE *f = fopen(path, "wb");
    if (!f) { test_fail_at(__FILE__, __LINE__, "cannot write %s", path); return; }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) { test_fail_at(__FILE__, __LINE__, "libpng write failed"); fclose(f); return; }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, npal);
    if (trans || trans_color) png_set_tRNS(png, info, trans, ntrans, trans_color);
    png_write_info(png, info);
    for (int r = 0; r < h; r++) png_write_row(png, (png_const_bytep)(rows_data + (size_t)r * rowbytes));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

static void write_png_raw(const char *path, int w, int h, int color, int depth, const unsigned char *rows_data,
                          size_t rowbytes, const png_color *palette, int npal) {
    write_png_trns(path, w, h, color, depth, rows_data, rowbytes, palette, npal, NULL, 0, NULL);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- Fashion-MNIST (the real files from the Debian package) ---- */
TEST(dataset_fashion_mnist_load) {
    Dataset tr, te;
    double t0 = now_seconds();
    int rc = dataset_open("fashion-mnist", NULL, SPLIT_TRAIN, &tr);
    double dt = now_seconds() - t0;
    T_ASSERT_MSG(rc == 0, "open fashion-mnist train: %s", err_msg());
    if (rc != 0) return;
    printf("    fashion-mnist train: %d images loaded in %.3f s\n", tr.n, dt);
    T_EQ_INT(tr.n, 60000);
    T_EQ_INT(tr.c, 1); T_EQ_INT(tr.h, 28); T_EQ_INT(tr.w, 28); T_EQ_INT(tr.classes, 10);
    T_ASSERT(strcmp(tr.class_names[9], "Ankle boot") == 0);
    int count[10] = {0};
    for (int i = 0; i < tr.n; i++) count[tr.y[i]]++;
    for (int k = 0; k < 10; k++) T_EQ_INT(count[k], 6000); /* Fashion-MNIST is balanced */
    T_EQ_INT(tr.y[0], 9); /* first training image is an ankle boot (Xiao et al. 2017 README) */
    float mn = 1, mx = 0;
    for (long i = 0; i < (long)tr.n * 784; i++) { if (tr.x[i] < mn) mn = tr.x[i]; if (tr.x[i] > mx) mx = tr.x[i]; }
    T_ASSERT(mn == 0.0f && mx == 1.0f);
    float mean, std;
    dataset_channel_stats(&tr, &mean, &std);
    T_NEAR(mean, 0.2860, 0.001); /* the widely quoted Fashion-MNIST train mean/std */
    T_NEAR(std, 0.3530, 0.001);
    dataset_close(&tr);
    T_ASSERT(is_zeroed(&tr));
    rc = dataset_open("fashion-mnist", FASHION_DIR, SPLIT_TEST, &te);
    T_ASSERT_MSG(rc == 0, "open fashion-mnist test: %s", err_msg());
    if (rc == 0) { T_EQ_INT(te.n, 10000); T_EQ_INT(te.y[0], 9); dataset_close(&te); }
}

TEST(dataset_fashion_png_roundtrip) {
    Dataset te, back;
    if (dataset_open("fashion-mnist", NULL, SPLIT_TEST, &te) != 0) { T_ASSERT_MSG(0, "%s", err_msg()); return; }
    char dir[1024], sub[1100];
    tpath(dir, sizeof dir, "fm_png");
    int rc = dataset_export_png(&te, dir, SPLIT_TEST, 300);
    T_ASSERT_MSG(rc == 0, "export: %s", err_msg());
    snprintf(sub, sizeof sub, "%s/test", dir);
    T_EQ_INT(count_entries(dir), 1);  /* only test/: no temporary folder left behind */
    T_EQ_INT(count_entries(sub), 10); /* one folder per class */
    char name[1200];
    snprintf(name, sizeof name, "png:%s", dir);
    rc = dataset_open(name, NULL, SPLIT_TEST, &back);
    T_ASSERT_MSG(rc == 0, "read back: %s", err_msg());
    if (rc == 0) {
        T_EQ_INT(back.n, 300);
        T_EQ_INT(back.c, 1); T_EQ_INT(back.h, 28); T_EQ_INT(back.w, 28); T_EQ_INT(back.classes, 10);
        T_ASSERT(strcmp(back.class_names[0], "T-shirt-top") == 0); /* the folder is 0_T-shirt-top: the label prefix is dropped */
        /* The PNG loader orders samples class by class, then by file name (= original index): the
         * expected order is the first 300 originals stably sorted by label. */
        int order[300], at = 0;
        for (int k = 0; k < 10; k++)
            for (int i = 0; i < 300; i++)
                if (te.y[i] == k) order[at++] = i;
        T_EQ_INT(at, 300);
        T_EQ_INT(ds_mismatches(&te, order, &back), 0);
        dataset_close(&back);
    }
    /* exporting over an existing split is refused and leaves it intact */
    err_clear();
    T_EQ_INT(dataset_export_png(&te, dir, SPLIT_TEST, 10), -1);
    T_CONTAINS(err_msg(), "already exists");
    T_EQ_INT(count_entries(sub), 10);
    /* only test/ exists, so the train split is reported missing */
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "/train", "missing");
    dataset_close(&te);
}

/* The checker used above can fail: one changed pixel is one mismatch. */
static void canary_mismatch(void) {
    Dataset a, b;
    if (synthetic_open(":5:1x4x4", SPLIT_TRAIN, &a) != 0) return;
    if (synthetic_open(":5:1x4x4", SPLIT_TRAIN, &b) != 0) { dataset_close(&a); return; }
    T_EQ_INT(ds_mismatches(&a, NULL, &b), 0);
    b.x[3] += 1.0f / 255.0f;
    T_EQ_INT(ds_mismatches(&a, NULL, &b), 0); /* must fail */
    dataset_close(&a);
    dataset_close(&b);
}
TEST(dataset_canary_mismatch_detected) { T_ASSERT(test_expect_failure(canary_mismatch)); }

/* ---- IDX, generated ---- */
TEST(idx_generated_raw_and_gzip) {
    char dir[1024];
    make_idx_dir("idx_ok", 7, dir, sizeof dir);
    Dataset d;
    int rc = dataset_open("mnist", dir, SPLIT_TRAIN, &d);
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc == 0) {
        T_EQ_INT(d.n, 7); T_EQ_INT(d.h, 4); T_EQ_INT(d.w, 5); T_EQ_INT(d.classes, 10);
        for (int i = 0; i < 7; i++) {
            T_EQ_INT(d.y[i], i % 10);
            for (int j = 0; j < 20; j++) T_ASSERT(d.x[i * 20 + j] == (float)((i * 31 + j * 7) % 256) / 255.0f);
        }
        dataset_close(&d);
    }
    /* gzip the images: same result through zlib */
    char raw[1100], gz[1100];
    snprintf(raw, sizeof raw, "%s/train-images-idx3-ubyte", dir);
    snprintf(gz, sizeof gz, "%s/train-images-idx3-ubyte.gz", dir);
    size_t n;
    unsigned char *b = read_bytes(raw, &n);
    gzFile g = gzopen(gz, "wb");
    gzwrite(g, b, (unsigned)n);
    gzclose(g);
    unlink(raw);
    free(b);
    rc = dataset_open("mnist", dir, SPLIT_TRAIN, &d);
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc == 0) {
        T_ASSERT(strstr(d.source, ".gz") != NULL);
        T_ASSERT(d.x[3 * 20 + 2] == (float)((3 * 31 + 2 * 7) % 256) / 255.0f);
        dataset_close(&d);
    }
}

TEST(idx_emnist_letters_transposed_one_based) {
    char dir[1024], p[1200];
    tpath(dir, sizeof dir, "emnist");
    mkdirs(dir);
    unsigned char b[64];
    b[0] = 0; b[1] = 0; b[2] = 8; b[3] = 3;
    put_be32(b + 4, 1); put_be32(b + 8, 2); put_be32(b + 12, 3); /* one 2x3 image stored transposed */
    for (int j = 0; j < 6; j++) b[16 + j] = (unsigned char)(10 * j);
    snprintf(p, sizeof p, "%s/emnist-letters-test-images-idx3-ubyte", dir);
    write_bytes(p, b, 22);
    b[3] = 1; put_be32(b + 4, 1); b[8] = 26; /* letter 'Z', 1-based */
    snprintf(p, sizeof p, "%s/emnist-letters-test-labels-idx1-ubyte", dir);
    write_bytes(p, b, 9);
    Dataset d;
    int rc = dataset_open("emnist-letters", dir, SPLIT_TEST, &d);
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc != 0) return;
    T_EQ_INT(d.h, 3); T_EQ_INT(d.w, 2); T_EQ_INT(d.y[0], 25); T_EQ_INT(d.classes, 26);
    T_ASSERT(strcmp(d.class_names[25], "Z") == 0);
    /* stored s[r][c] (2 rows, 3 cols) -> upright u[c][r] */
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 3; c++) T_ASSERT(d.x[c * 2 + r] == (float)(10 * (r * 3 + c)) / 255.0f);
    dataset_close(&d);
    EXPECT_OPEN_ERROR("emnist", dir, SPLIT_TEST, "choose a subset", NULL);
}

/* Each bad IDX input of issue 4 item 5, through the API. Returns the folder for the CLI twin. */
static void idx_bad(const char *rel, const unsigned char *img, size_t ni, const unsigned char *lab, size_t nl,
                    char *dir, size_t dn) {
    make_idx_dir(rel, 3, dir, dn);
    char p[1200];
    if (img) { snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir); write_bytes(p, img, ni); }
    if (lab) { snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", dir); write_bytes(p, lab, nl); }
}

TEST(idx_bad_inputs_api) {
    unsigned char img[16 + 3 * 20], lab[8 + 3];
    size_t ni = make_idx(img, 1, 3, 4, 5, 10), nl = make_idx(lab, 0, 3, 0, 0, 10);
    char dir[1024];
    /* truncated: header says 3x4x5 = 60 bytes, file has 50 */
    idx_bad("bad_trunc", img, ni - 10, NULL, 0, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte: truncated", "60 data bytes but only 50");
    /* truncated inside the header */
    idx_bad("bad_trunc_hdr", img, 10, NULL, 0, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte: truncated", "header");
    /* empty file */
    idx_bad("bad_empty", img, 0, NULL, 0, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte: truncated", NULL);
    /* extra bytes after the data */
    unsigned char big[sizeof img + 5] = {0};
    memcpy(big, img, ni);
    idx_bad("bad_extra", big, ni + 5, NULL, 0, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte: 5 bytes of unexpected data", NULL);
    /* a gzip stream with megabytes after the data: reported without reading it all */
    make_idx_dir("bad_bomb", 3, dir, sizeof dir);
    char bp[1200];
    snprintf(bp, sizeof bp, "%s/train-images-idx3-ubyte", dir);
    unlink(bp);
    snprintf(bp, sizeof bp, "%s/train-images-idx3-ubyte.gz", dir);
    gzFile bz = gzopen(bp, "wb9");
    gzwrite(bz, img, (unsigned)ni);
    unsigned char *zeros = calloc(1, 4u << 20);
    gzwrite(bz, zeros, 4u << 20);
    gzclose(bz);
    free(zeros);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte.gz: more than 1 MiB of unexpected data", NULL);
    /* wrong magic */
    unsigned char w[sizeof img];
    memcpy(w, img, ni);
    w[0] = 'P'; w[1] = 'K';
    idx_bad("bad_magic", w, ni, NULL, 0, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte: not an IDX file", NULL);
    /* byte-swapped magic: 03 08 00 00 */
    memcpy(w, img, ni);
    w[0] = 3; w[1] = 8; w[2] = 0; w[3] = 0;
    idx_bad("bad_swapped", w, ni, NULL, 0, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte: byte-swapped", "big-endian");
    /* unsupported type (float32) */
    memcpy(w, img, ni);
    w[2] = 0x0D;
    idx_bad("bad_type", w, ni, NULL, 0, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte: IDX data type 0x0d", "not supported");
    /* dims overflow: 2^32-1 cubed must not wrap around */
    memcpy(w, img, ni);
    put_be32(w + 4, 0xFFFFFFFFu); put_be32(w + 8, 0xFFFFFFFFu); put_be32(w + 12, 0xFFFFFFFFu);
    idx_bad("bad_dims", w, ni, NULL, 0, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte: IDX dimensions are too large", NULL);
    /* 65536 x 65536 x 1: within 64 bits, beyond the cap */
    put_be32(w + 4, 65536); put_be32(w + 8, 65536); put_be32(w + 12, 1);
    idx_bad("bad_dims2", w, ni, NULL, 0, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "too large", NULL);
    /* image/label count mismatch: 2 labels for 3 images */
    unsigned char l2[16];
    size_t nl2 = make_idx(l2, 0, 2, 0, 0, 10);
    idx_bad("bad_count", NULL, 0, l2, nl2, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-labels-idx1-ubyte: 2 labels but", "3 images");
    /* label out of range */
    unsigned char l3[sizeof lab];
    memcpy(l3, lab, nl);
    l3[8 + 2] = 10;
    idx_bad("bad_label", NULL, 0, l3, nl, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-labels-idx1-ubyte: label 10 at index 2 is out of range", NULL);
    /* images and labels swapped */
    idx_bad("bad_swapfiles", lab, nl, img, ni, dir, sizeof dir);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "swap", NULL);
    /* a directory where the file should be */
    char p[1200];
    make_idx_dir("bad_isdir", 3, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
    unlink(p);
    mkdirs(p);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte: is a directory", NULL);
    /* a data dir that is a file: the path cannot be reached */
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", dir);
    EXPECT_OPEN_ERROR("mnist", p, SPLIT_TRAIN, "train-images-idx3-ubyte", "Not a directory");
    /* missing files name the place and the fix */
    tpath(dir, sizeof dir, "no_such_dir");
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "no_such_dir/train-images-idx3-ubyte.gz: no such file", "--data-dir");
    EXPECT_OPEN_ERROR("fashion-mnist", dir, SPLIT_TEST, "t10k-images-idx3-ubyte.gz", "dataset-fashion-mnist");
    /* unreadable file (only meaningful when not root: root reads anything) */
    if (geteuid() != 0) {
        make_idx_dir("bad_perm", 3, dir, sizeof dir);
        snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
        chmod(p, 0);
        EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte: cannot read", "permissions");
    }
    /* a truncated gzip stream */
    make_idx_dir("bad_gz", 3, dir, sizeof dir);
    unsigned char big2[16 + 3 * 400];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
    unlink(p);
    size_t nb = make_idx(big2, 1, 3, 20, 20, 10);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    gzFile g = gzopen(p, "wb");
    gzwrite(g, big2, (unsigned)nb);
    gzclose(g);
    size_t gl;
    unsigned char *gzb = read_bytes(p, &gl);
    write_bytes(p, gzb, gl / 2);
    free(gzb);
    EXPECT_OPEN_ERROR("mnist", dir, SPLIT_TRAIN, "train-images-idx3-ubyte.gz", NULL);
}

TEST(idx_parse_mem_direct) {
    unsigned char img[16 + 2 * 4], lab[8 + 2];
    size_t ni = make_idx(img, 1, 2, 2, 2, 3), nl = make_idx(lab, 0, 2, 0, 0, 3);
    IdxArray a, b;
    T_EQ_INT(idx_parse_mem(img, ni, "mem-img", &a), 0);
    T_EQ_INT(idx_parse_mem(lab, nl, "mem-lab", &b), 0);
    T_EQ_INT(a.count, 8);
    Dataset d;
    T_EQ_INT(idx_make_dataset(&a, "mem-img", &b, "mem-lab", 3, 0, 0, &d), 0);
    T_EQ_INT(d.n, 2);
    dataset_close(&d);
    err_clear();
    T_EQ_INT(idx_make_dataset(&a, "mem-img", &b, "mem-lab", 1, 0, 0, &d), -1); /* label 1 >= 1 class */
    T_CONTAINS(err_msg(), "mem-lab: label 1");
    T_ASSERT(is_zeroed(&d));
}

/* ---- CIFAR, generated ---- */
/* record i: labels (i%10) or (i%20, i%100); pixel j = (i*13 + j) % 256 */
static void make_cifar(const char *path, int kind, int n, int start) {
    int lb = kind == CIFAR_10 ? 1 : 2;
    size_t rec = (size_t)lb + 3072;
    unsigned char *b = malloc(rec * (size_t)n);
    for (int r = 0; r < n; r++) {
        int i = start + r;
        unsigned char *p = b + rec * (size_t)r;
        if (kind == CIFAR_10) p[0] = (unsigned char)(i % 10);
        else { p[0] = (unsigned char)(i % 20); p[1] = (unsigned char)(i % 100); }
        for (int j = 0; j < 3072; j++) p[lb + j] = (unsigned char)((i * 13 + j) % 256);
    }
    write_bytes(path, b, rec * (size_t)n);
    free(b);
}

static void check_cifar(const Dataset *d, int n, int start, int label_mod) {
    T_EQ_INT(d->n, n); T_EQ_INT(d->c, 3); T_EQ_INT(d->h, 32); T_EQ_INT(d->w, 32);
    long bad = 0;
    for (int r = 0; r < d->n && r < n; r++) {
        int i = start + r;
        if (d->y[r] != i % label_mod) bad++;
        for (int j = 0; j < 3072; j++) /* R plane, then G, then B: already CHW */
            if (d->x[(size_t)r * 3072 + j] != (float)((i * 13 + j) % 256) / 255.0f) { bad++; break; }
    }
    T_EQ_INT(bad, 0);
}

TEST(cifar10_generated) {
    char dir[1024], p[1200];
    tpath(dir, sizeof dir, "cifar10");
    mkdirs(dir);
    for (int b = 1; b <= 5; b++) {
        snprintf(p, sizeof p, "%s/data_batch_%d.bin", dir, b);
        make_cifar(p, CIFAR_10, 12, (b - 1) * 12);
    }
    snprintf(p, sizeof p, "%s/test_batch.bin", dir);
    make_cifar(p, CIFAR_10, 7, 1000);
    Dataset d;
    int rc = dataset_open("cifar10", dir, SPLIT_TRAIN, &d);
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc == 0) {
        check_cifar(&d, 60, 0, 10);
        T_ASSERT(strcmp(d.class_names[0], "airplane") == 0 && strcmp(d.class_names[9], "truck") == 0);
        T_ASSERT(strcmp(d.name, "cifar10") == 0);
        dataset_close(&d);
    }
    rc = dataset_open("cifar10", dir, SPLIT_TEST, &d);
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc == 0) { check_cifar(&d, 7, 1000, 10); dataset_close(&d); }
    /* the folder the official archive unpacks to is found inside the data dir */
    char sub[1100];
    tpath(sub, sizeof sub, "cifar10b/cifar-10-batches-bin");
    mkdirs(sub);
    snprintf(p, sizeof p, "%s/test_batch.bin", sub);
    make_cifar(p, CIFAR_10, 3, 5);
    tpath(dir, sizeof dir, "cifar10b");
    rc = dataset_open("cifar10", dir, SPLIT_TEST, &d);
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc == 0) { check_cifar(&d, 3, 5, 10); dataset_close(&d); }
}

TEST(cifar100_generated_fine_and_coarse) {
    char dir[1024], p[1200];
    tpath(dir, sizeof dir, "cifar100");
    mkdirs(dir);
    snprintf(p, sizeof p, "%s/train.bin", dir);
    make_cifar(p, CIFAR_100_FINE, 150, 0);
    snprintf(p, sizeof p, "%s/test.bin", dir);
    make_cifar(p, CIFAR_100_FINE, 9, 40);
    Dataset d;
    int rc = dataset_open("cifar100", dir, SPLIT_TRAIN, &d);
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc == 0) {
        check_cifar(&d, 150, 0, 100);
        T_EQ_INT(d.classes, 100);
        T_ASSERT(strcmp(d.class_names[99], "worm") == 0);
        dataset_close(&d);
    }
    rc = dataset_open("cifar100-coarse", dir, SPLIT_TEST, &d);
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc == 0) {
        check_cifar(&d, 9, 40, 20);
        T_EQ_INT(d.classes, 20);
        T_ASSERT(strcmp(d.class_names[19], "vehicles_2") == 0);
        dataset_close(&d);
    }
}

TEST(cifar_bad_inputs_api) {
    char dir[1024], p[1200];
    tpath(dir, sizeof dir, "cifar_missing");
    mkdirs(dir);
    EXPECT_OPEN_ERROR("cifar10", dir, SPLIT_TRAIN, "cifar_missing/data_batch_1.bin: no such file", "cifar.html");
    EXPECT_OPEN_ERROR("cifar100", dir, SPLIT_TEST, "cifar_missing/test.bin: no such file", "cifar-100-binary");
    /* truncated test batch */
    tpath(dir, sizeof dir, "cifar_trunc");
    mkdirs(dir);
    snprintf(p, sizeof p, "%s/test_batch.bin", dir);
    make_cifar(p, CIFAR_10, 2, 0);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    write_bytes(p, b, n - 100);
    EXPECT_OPEN_ERROR("cifar10", dir, SPLIT_TEST, "test_batch.bin: truncated", "3073-byte records");
    /* a CIFAR-100 file read as CIFAR-10: size does not divide, or labels out of range */
    make_cifar(p, CIFAR_100_FINE, 3073, 0); /* 3073 records of 3074 bytes = 3074 records of 3073 */
    EXPECT_OPEN_ERROR("cifar10", dir, SPLIT_TEST, "test_batch.bin: class label", "out of range 0..9");
    /* label out of range */
    b[0] = 10;
    write_bytes(p, b, n);
    EXPECT_OPEN_ERROR("cifar10", dir, SPLIT_TEST, "test_batch.bin: class label 10 in record 0", NULL);
    b[0] = 3;
    b[3073] = 200;
    write_bytes(p, b, n);
    EXPECT_OPEN_ERROR("cifar10", dir, SPLIT_TEST, "record 1 is out of range", NULL);
    free(b);
    /* empty file, a directory, a bad record in batch 3 of 5 (nothing half-loaded) */
    write_bytes(p, "", 0);
    EXPECT_OPEN_ERROR("cifar10", dir, SPLIT_TEST, "test_batch.bin: empty file", NULL);
    unlink(p);
    mkdirs(p);
    EXPECT_OPEN_ERROR("cifar10", dir, SPLIT_TEST, "test_batch.bin: is a directory", NULL);
    for (int k = 1; k <= 5; k++) {
        snprintf(p, sizeof p, "%s/data_batch_%d.bin", dir, k);
        make_cifar(p, CIFAR_10, 2, 0);
    }
    snprintf(p, sizeof p, "%s/data_batch_3.bin", dir);
    make_cifar(p, CIFAR_100_COARSE, 1, 0);
    EXPECT_OPEN_ERROR("cifar10", dir, SPLIT_TRAIN, "data_batch_3.bin", NULL);
    /* fine label out of range through the in-memory parser */
    unsigned char rec[3074] = {0};
    rec[0] = 19; rec[1] = 100;
    Dataset d;
    err_clear();
    T_EQ_INT(cifar_parse_mem(rec, sizeof rec, "mem.bin", CIFAR_100_FINE, &d), -1);
    T_CONTAINS(err_msg(), "mem.bin: fine label 100 in record 0");
    T_ASSERT(is_zeroed(&d));
}

/* ---- PNG folders ---- */
/* A 3x2 image with 3 channels in every colour type libpng supports, all meaning the same RGB
 * pixels after conversion; or grey ones. */
static void png_fixture_dir(const char *rel, char *dir, size_t dn) {
    tpath(dir, dn, rel);
    char p[1200];
    snprintf(p, sizeof p, "%s/a", dir); mkdirs(p);
    snprintf(p, sizeof p, "%s/b", dir); mkdirs(p);
    unsigned char g[2 * 3] = {0, 50, 100, 150, 200, 255};
    snprintf(p, sizeof p, "%s/a/1.png", dir);
    T_EQ_INT(png_write(p, g, 3, 2, 1), 0);
    snprintf(p, sizeof p, "%s/b/2.png", dir);
    T_EQ_INT(png_write(p, g, 3, 2, 1), 0);
}

TEST(png_write_read_all_channel_counts) {
    unsigned char pix[4 * 5 * 4];
    for (int i = 0; i < (int)sizeof pix; i++) pix[i] = (unsigned char)(i * 37 + 11);
    char p[1024];
    tpath(p, sizeof p, "w.png");
    for (int ch = 1; ch <= 4; ch++) {
        T_EQ_INT(png_write(p, pix, 5, 4, ch), 0);
        PngImage im;
        int rc = png_read_file(p, &im);
        T_ASSERT_MSG(rc == 0, "%s", err_msg());
        if (rc != 0) continue;
        int want = ch <= 2 ? 1 : 3; /* alpha dropped */
        T_EQ_INT(im.channels, want); T_EQ_INT(im.w, 5); T_EQ_INT(im.h, 4);
        long bad = 0;
        for (int j = 0; j < 20; j++)
            for (int c = 0; c < want; c++) bad += im.pix[j * want + c] != pix[j * ch + c];
        T_EQ_INT(bad, 0);
        free(im.pix);
    }
    char tmp[1100];
    tmp_path(p, tmp, sizeof tmp);
    T_ASSERT(access(tmp, F_OK) != 0); /* no temp file left */
    tpath(p, sizeof p, "no_such_dir/x.png");
    err_clear();
    T_EQ_INT(png_write(p, pix, 5, 4, 3), -1);
    T_CONTAINS(err_msg(), "no_such_dir/x.png: cannot create");
}

TEST(png_folder_colour_types_converted) {
    char dir[1024], p[1200];
    tpath(dir, sizeof dir, "png_types");
    const char *cls[] = {"c0", "c1"};
    for (int k = 0; k < 2; k++) { snprintf(p, sizeof p, "%s/%s", dir, cls[k]); mkdirs(p); }
    /* 2x2 RGB reference: (10,20,30) (40,50,60) (70,80,90) (250,251,252) */
    unsigned char rgb[12] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 250, 251, 252};
    unsigned char rgba[16], rgb16[24], rgba16[32];
    for (int j = 0; j < 4; j++) {
        for (int c = 0; c < 3; c++) {
            rgba[j * 4 + c] = rgb[j * 3 + c];
            /* 16-bit v*257 scales back to v exactly */
            unsigned v = rgb[j * 3 + c] * 257u;
            rgb16[(j * 3 + c) * 2] = (unsigned char)(v >> 8); rgb16[(j * 3 + c) * 2 + 1] = (unsigned char)v;
            rgba16[(j * 4 + c) * 2] = (unsigned char)(v >> 8); rgba16[(j * 4 + c) * 2 + 1] = (unsigned char)v;
        }
        rgba[j * 4 + 3] = (unsigned char)(j * 60);
        rgba16[j * 8 + 6] = 0x12; rgba16[j * 8 + 7] = 0x34;
    }
    png_color pal[4];
    unsigned char idx[4] = {2, 0, 3, 1}; /* 8-bit palette indices */
    for (int j = 0; j < 4; j++) { pal[idx[j]].red = rgb[j * 3]; pal[idx[j]].green = rgb[j * 3 + 1]; pal[idx[j]].blue = rgb[j * 3 + 2]; }
    unsigned char idx2[2] = {(unsigned char)(2 << 6 | 0 << 4), (unsigned char)(3 << 6 | 1 << 4)}; /* 2-bit palette */
    snprintf(p, sizeof p, "%s/c0/1_rgb.png", dir);    write_png_raw(p, 2, 2, PNG_COLOR_TYPE_RGB, 8, rgb, 6, NULL, 0);
    snprintf(p, sizeof p, "%s/c0/2_rgba.png", dir);   write_png_raw(p, 2, 2, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, 8, NULL, 0);
    snprintf(p, sizeof p, "%s/c0/3_rgb16.png", dir);  write_png_raw(p, 2, 2, PNG_COLOR_TYPE_RGB, 16, rgb16, 12, NULL, 0);
    snprintf(p, sizeof p, "%s/c1/4_rgba16.png", dir); write_png_raw(p, 2, 2, PNG_COLOR_TYPE_RGB_ALPHA, 16, rgba16, 16, NULL, 0);
    snprintf(p, sizeof p, "%s/c1/5_pal.png", dir);    write_png_raw(p, 2, 2, PNG_COLOR_TYPE_PALETTE, 8, idx, 2, pal, 4);
    snprintf(p, sizeof p, "%s/c1/6_pal2.png", dir);   write_png_raw(p, 2, 2, PNG_COLOR_TYPE_PALETTE, 2, idx2, 1, pal, 4);
    /* palette with transparency (tRNS): libpng's expansion gives RGBA; the alpha is dropped */
    unsigned char trans[4] = {0, 128, 255, 7};
    snprintf(p, sizeof p, "%s/c1/6z_pal_trns.png", dir);
    write_png_trns(p, 2, 2, PNG_COLOR_TYPE_PALETTE, 8, idx, 2, pal, 4, trans, 4, NULL);
    /* grey, grey+alpha and 16-bit grey in an RGB set: replicated to R=G=B */
    unsigned char g[4] = {0, 85, 170, 255}, ga[8] = {0, 9, 85, 9, 170, 9, 255, 9};
    unsigned char g16[8] = {0, 0, 85, 85, 170, 170, 255, 255};
    unsigned char g1[2] = {0x80, 0x40}; /* 1-bit: (1,0) (0,1) -> 255 0 / 0 255 */
    snprintf(p, sizeof p, "%s/c1/7_grey.png", dir);   write_png_raw(p, 2, 2, PNG_COLOR_TYPE_GRAY, 8, g, 2, NULL, 0);
    snprintf(p, sizeof p, "%s/c1/8_ga.png", dir);     write_png_raw(p, 2, 2, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, 4, NULL, 0);
    snprintf(p, sizeof p, "%s/c1/9_g16.png", dir);    write_png_raw(p, 2, 2, PNG_COLOR_TYPE_GRAY, 16, g16, 4, NULL, 0);
    snprintf(p, sizeof p, "%s/c1/9z_g1.png", dir);    write_png_raw(p, 2, 2, PNG_COLOR_TYPE_GRAY, 1, g1, 1, NULL, 0);
    png_color_16 tgrey = {.gray = 85};
    snprintf(p, sizeof p, "%s/c1/9zz_grey_trns.png", dir);
    write_png_trns(p, 2, 2, PNG_COLOR_TYPE_GRAY, 8, g, 2, NULL, 0, NULL, 0, &tgrey);
    /* ignored: not .png, hidden, nested folder */
    snprintf(p, sizeof p, "%s/c1/README.txt", dir);   write_bytes(p, "hello", 5);
    snprintf(p, sizeof p, "%s/c1/.hidden.png", dir);  write_bytes(p, "junk", 4);
    snprintf(p, sizeof p, "%s/notes.txt", dir);       write_bytes(p, "top-level file", 14);
    char name[1100];
    snprintf(name, sizeof name, "png:%s", dir);
    Dataset d;
    int rc = dataset_open(name, NULL, SPLIT_TRAIN, &d);
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc != 0) return;
    T_EQ_INT(d.n, 12); T_EQ_INT(d.c, 3); T_EQ_INT(d.h, 2); T_EQ_INT(d.w, 2); T_EQ_INT(d.classes, 2);
    T_ASSERT(strcmp(d.class_names[1], "c1") == 0);
    long bad = 0;
    for (int i = 0; i < 7; i++) /* every colour form of the same RGB picture */
        for (int c = 0; c < 3; c++)
            for (int j = 0; j < 4; j++) bad += d.x[i * 12 + c * 4 + j] != (float)rgb[j * 3 + c] / 255.0f;
    T_EQ_INT(bad, 0);
    T_EQ_INT(d.y[0], 0); T_EQ_INT(d.y[2], 0); T_EQ_INT(d.y[3], 1); T_EQ_INT(d.y[11], 1);
    for (int i = 7; i < 10; i++)
        for (int c = 0; c < 3; c++)
            for (int j = 0; j < 4; j++) bad += d.x[i * 12 + c * 4 + j] != (float)g[j] / 255.0f;
    float want1[4] = {1, 0, 0, 1};
    for (int c = 0; c < 3; c++)
        for (int j = 0; j < 4; j++) {
            bad += d.x[10 * 12 + c * 4 + j] != want1[j];
            bad += d.x[11 * 12 + c * 4 + j] != (float)g[j] / 255.0f; /* grey + tRNS: the key colour stays */
        }
    T_EQ_INT(bad, 0);
    dataset_close(&d);
}

TEST(png_interlaced_adam7) {
    enum { W = 11, H = 7 };
    unsigned char rgb[H][W * 3];
    png_bytep rows[H];
    for (int r = 0; r < H; r++) {
        rows[r] = rgb[r];
        for (int j = 0; j < W * 3; j++) rgb[r][j] = (unsigned char)(r * 40 + j * 3);
    }
    char p[1024];
    tpath(p, sizeof p, "adam7.png");
    FILE *f = fopen(p, "wb");
    T_ASSERT(f != NULL);
    if (!f) return;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) { test_fail_at(__FILE__, __LINE__, "libpng write failed"); fclose(f); return; }
    png_init_io(png, f);
    png_set_IHDR(png, info, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows); /* handles the 7 passes */
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    PngImage im;
    int rc = png_read_file(p, &im);
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc != 0) return;
    T_EQ_INT(im.w, W); T_EQ_INT(im.h, H); T_EQ_INT(im.channels, 3);
    long bad = 0;
    for (int r = 0; r < H; r++) bad += memcmp(im.pix + (size_t)r * W * 3, rgb[r], W * 3) != 0;
    T_EQ_INT(bad, 0);
    free(im.pix);
}

TEST(png_folder_grey_set_converts_rgb) {
    char dir[1024], p[1200];
    png_fixture_dir("png_grey", dir, sizeof dir);
    unsigned char rgb[6 * 3];
    for (int j = 0; j < 6; j++) { rgb[j * 3] = (unsigned char)(j * 40); rgb[j * 3 + 1] = 100; rgb[j * 3 + 2] = (unsigned char)(255 - j * 40); }
    snprintf(p, sizeof p, "%s/b/3.png", dir);
    T_EQ_INT(png_write(p, rgb, 3, 2, 3), 0);
    char name[1100];
    snprintf(name, sizeof name, "png:%s", dir);
    Dataset d;
    int rc = dataset_open(name, NULL, SPLIT_TEST, &d); /* no train/test folders: DIR serves both splits */
    T_ASSERT_MSG(rc == 0, "%s", err_msg());
    if (rc != 0) return;
    T_EQ_INT(d.n, 3); T_EQ_INT(d.c, 1);
    for (int j = 0; j < 6; j++) {
        double luma = 0.299 * rgb[j * 3] + 0.587 * rgb[j * 3 + 1] + 0.114 * rgb[j * 3 + 2];
        T_NEAR(d.x[2 * 6 + j] * 255.0, luma, 0.5 + 1e-4);
    }
    dataset_close(&d);
}

/* Offset of the first byte of chunk `type`'s data, or -1. */
static long png_chunk(const unsigned char *b, size_t n, const char *type, uint32_t *len) {
    size_t at = 8;
    while (at + 8 <= n) {
        uint32_t l = (uint32_t)b[at] << 24 | (uint32_t)b[at + 1] << 16 | (uint32_t)b[at + 2] << 8 | b[at + 3];
        if (memcmp(b + at + 4, type, 4) == 0) { *len = l; return (long)at + 8; }
        at += 12 + (size_t)l;
    }
    return -1;
}

TEST(png_bad_inputs_api) {
    char dir[1024], p[1200], name[1100];
    /* bad CRC in IDAT */
    png_fixture_dir("png_crc", dir, sizeof dir);
    snprintf(name, sizeof name, "png:%s", dir);
    snprintf(p, sizeof p, "%s/b/2.png", dir);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    uint32_t len = 0;
    long at = png_chunk(b, n, "IDAT", &len);
    T_ASSERT(at > 0 && len > 2);
    b[at + len / 2] ^= 0x55;
    write_bytes(p, b, n);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "b/2.png: corrupt PNG", "CRC");
    /* truncated IDAT */
    b[at + len / 2] ^= 0x55;
    write_bytes(p, b, (size_t)at + len / 2);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "b/2.png: corrupt PNG", NULL);
    /* truncated inside the header */
    write_bytes(p, b, 20);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "b/2.png: corrupt PNG", NULL);
    /* not a PNG at all */
    write_bytes(p, "GIF89a this is not a png", 24);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "b/2.png: not a PNG file", NULL);
    /* IHDR claiming a huge image in a tiny file */
    write_bytes(p, b, n);
    long ih = png_chunk(b, n, "IHDR", &len);
    put_be32(b + ih, 16000); put_be32(b + ih + 4, 16000);
    uint32_t crc = (uint32_t)crc32(0, b + ih - 4, 4 + 13);
    put_be32(b + ih + 13, crc);
    write_bytes(p, b, n);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "b/2.png: corrupt PNG", "larger than the file");
    free(b);
    /* different sizes */
    png_fixture_dir("png_sizes", dir, sizeof dir);
    snprintf(name, sizeof name, "png:%s", dir);
    unsigned char g[16] = {0};
    snprintf(p, sizeof p, "%s/b/3.png", dir);
    T_EQ_INT(png_write(p, g, 4, 4, 1), 0);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "b/3.png: image is 4x4", "same size");
    /* empty class folder (only a non-png file in it) */
    png_fixture_dir("png_empty", dir, sizeof dir);
    snprintf(name, sizeof name, "png:%s", dir);
    snprintf(p, sizeof p, "%s/c", dir);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/c/readme.txt", dir);
    write_bytes(p, "x", 1);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "png_empty/c: empty class folder", NULL);
    /* no class folders */
    tpath(dir, sizeof dir, "png_noclass");
    mkdirs(dir);
    snprintf(name, sizeof name, "png:%s", dir);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "png_noclass: no class folders", NULL);
    /* a directory named like a PNG */
    png_fixture_dir("png_dirfile", dir, sizeof dir);
    snprintf(name, sizeof name, "png:%s", dir);
    snprintf(p, sizeof p, "%s/a/9.png", dir);
    mkdirs(p);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "a/9.png: is a directory", NULL);
    /* the set path is missing, or a file */
    tpath(dir, sizeof dir, "png_missing");
    snprintf(name, sizeof name, "png:%s", dir);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "png_missing: No such file", NULL);
    tpath(dir, sizeof dir, "w_file.png");
    write_bytes(dir, "x", 1);
    snprintf(name, sizeof name, "png:%s", dir);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "w_file.png: is not a directory", NULL);
    /* train/ and test/ with different class folders */
    tpath(dir, sizeof dir, "png_splits");
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/train", dir);
    png_fixture_dir("png_splits/train", p, sizeof p);
    png_fixture_dir("png_splits/test", p, sizeof p);
    snprintf(p, sizeof p, "%s/test/z", dir);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/test/z/1.png", dir);
    T_EQ_INT(png_write(p, g, 3, 2, 1), 0);
    snprintf(name, sizeof name, "png:%s", dir);
    EXPECT_OPEN_ERROR(name, NULL, SPLIT_TRAIN, "png_splits/train: has no class folder 'z'", NULL);
}

/* ---- synthetic ---- */
TEST(dataset_synthetic_default_and_deterministic) {
    Dataset a, b, t;
    T_EQ_INT(dataset_open("synthetic", NULL, SPLIT_TRAIN, &a), 0);
    T_EQ_INT(dataset_open("synthetic", NULL, SPLIT_TRAIN, &b), 0);
    T_EQ_INT(dataset_open("synthetic", NULL, SPLIT_TEST, &t), 0);
    T_EQ_INT(a.n, 2000); T_EQ_INT(a.c, 1); T_EQ_INT(a.h, 28); T_EQ_INT(a.w, 28); T_EQ_INT(a.classes, 10);
    T_EQ_INT(ds_mismatches(&a, NULL, &b), 0);
    T_ASSERT(ds_mismatches(&a, NULL, &t) > 1900); /* test split differs */
    int count[10] = {0};
    long out = 0;
    for (int i = 0; i < a.n; i++) count[a.y[i]]++;
    for (long i = 0; i < (long)a.n * 784; i++) out += !(a.x[i] >= 0.0f && a.x[i] <= 1.0f);
    T_EQ_INT(out, 0);
    for (int k = 0; k < 10; k++) T_ASSERT(count[k] > 100);
    /* sample i does not depend on N */
    Dataset s;
    T_EQ_INT(dataset_open("synthetic:50", NULL, SPLIT_TRAIN, &s), 0);
    T_EQ_INT(s.n, 50);
    T_ASSERT(memcmp(s.x, a.x, 50 * 784 * sizeof(float)) == 0);
    /* learnable: a nearest-class-mean classifier fit on train beats chance (10%) by far on test */
    double *mean = calloc(10 * 784, sizeof(double));
    for (int i = 0; i < a.n; i++)
        for (int j = 0; j < 784; j++) mean[a.y[i] * 784 + j] += a.x[i * 784 + j] / count[a.y[i]];
    int correct = 0;
    for (int i = 0; i < t.n; i++) {
        int best = -1;
        double bd = 1e300;
        for (int k = 0; k < 10; k++) {
            double dd = 0;
            for (int j = 0; j < 784; j++) { double e = t.x[i * 784 + j] - mean[k * 784 + j]; dd += e * e; }
            if (dd < bd) { bd = dd; best = k; }
        }
        correct += best == t.y[i];
    }
    printf("    synthetic: nearest-class-mean test accuracy %.3f\n", (double)correct / t.n);
    T_ASSERT(correct > t.n / 2);
    T_ASSERT(correct < t.n); /* and not trivially perfect */
    free(mean);
    dataset_close(&a); dataset_close(&b); dataset_close(&t); dataset_close(&s);
}

TEST(dataset_synthetic_shapes_and_errors) {
    Dataset d;
    T_EQ_INT(dataset_open("synthetic:64:3x32x32:5", NULL, SPLIT_TRAIN, &d), 0);
    T_EQ_INT(d.n, 64); T_EQ_INT(d.c, 3); T_EQ_INT(d.h, 32); T_EQ_INT(d.w, 32); T_EQ_INT(d.classes, 5);
    for (int i = 0; i < d.n; i++) T_ASSERT(d.y[i] >= 0 && d.y[i] < 5);
    T_ASSERT(strcmp(d.name, "synthetic:64:3x32x32:5") == 0);
    dataset_close(&d);
    EXPECT_OPEN_ERROR("synthetic:0", NULL, SPLIT_TRAIN, "synthetic:0: N must be", NULL);
    EXPECT_OPEN_ERROR("synthetic:10:3x32", NULL, SPLIT_TRAIN, "shape '3x32'", NULL);
    EXPECT_OPEN_ERROR("synthetic:10:1x8x8:1", NULL, SPLIT_TRAIN, "K (classes)", NULL);
    EXPECT_OPEN_ERROR("synthetic:10:1x8x8:3:9", NULL, SPLIT_TRAIN, "too many fields", NULL);
    EXPECT_OPEN_ERROR("synthetic:16000000:16x4096x4096", NULL, SPLIT_TRAIN, "more than", NULL);
    EXPECT_OPEN_ERROR("synthetically", NULL, SPLIT_TRAIN, "unknown dataset", NULL);
    EXPECT_OPEN_ERROR("", NULL, SPLIT_TRAIN, "no dataset name", NULL);
}

/* ---- split and statistics ---- */
static void numbered(Dataset *d, int n) {
    dataset_alloc(d, n, 2, 1, 1, 3);
    for (int i = 0; i < n; i++) { d->x[2 * i] = (float)i; d->x[2 * i + 1] = (float)(2 * i); d->y[i] = i % 3; }
}

TEST(dataset_split_partition_and_seed) {
    Dataset src, tr, va, tr2, va2, tr3, va3;
    numbered(&src, 101);
    dataset_split(&src, 21, 7, &tr, &va);
    T_EQ_INT(tr.n, 80); T_EQ_INT(va.n, 21); T_EQ_INT(va.c, 2); T_EQ_INT(tr.classes, 3);
    int seen[101] = {0};
    for (int i = 0; i < tr.n; i++) seen[(int)tr.x[2 * i]]++;
    for (int i = 0; i < va.n; i++) seen[(int)va.x[2 * i]]++;
    long bad = 0;
    for (int i = 0; i < 101; i++) bad += seen[i] != 1;
    for (int i = 0; i < tr.n; i++) bad += tr.y[i] != (int)tr.x[2 * i] % 3 || tr.x[2 * i + 1] != 2 * tr.x[2 * i];
    T_EQ_INT(bad, 0); /* a partition, rows and labels kept together */
    dataset_split(&src, 21, 7, &tr2, &va2);
    T_ASSERT(memcmp(va.x, va2.x, 21 * 2 * sizeof(float)) == 0);
    dataset_split(&src, 21, 8, &tr3, &va3);
    T_ASSERT(memcmp(va.x, va3.x, 21 * 2 * sizeof(float)) != 0);
    int moved = 0;
    for (int i = 0; i < 80; i++) moved += tr.x[2 * i] != (float)i;
    T_ASSERT(moved > 40); /* shuffled, not a prefix */
    dataset_close(&tr); dataset_close(&va); dataset_close(&tr2); dataset_close(&va2);
    dataset_close(&tr3); dataset_close(&va3); dataset_close(&src);
}

TEST(dataset_channel_stats_closed_form) {
    Dataset d;
    numbered(&d, 100); /* channel 0 = 0..99, channel 1 = 0,2,..,198 */
    float m[2], s[2];
    dataset_channel_stats(&d, m, s);
    /* mean of 0..n-1 = (n-1)/2; population variance = (n^2-1)/12 */
    T_NEAR(m[0], 49.5, 1e-5); T_NEAR(s[0], sqrt((100.0 * 100 - 1) / 12), 1e-4);
    T_NEAR(m[1], 99.0, 1e-5); T_NEAR(s[1], 2 * sqrt((100.0 * 100 - 1) / 12), 1e-4);
    dataset_close(&d);
}

TEST(dataset_export_png_errors) {
    Dataset d;
    T_EQ_INT(dataset_open("synthetic:20:2x4x4", NULL, SPLIT_TRAIN, &d), 0);
    char dir[1024];
    tpath(dir, sizeof dir, "exp_bad");
    err_clear();
    T_EQ_INT(dataset_export_png(&d, dir, SPLIT_TRAIN, 0), -1);
    T_CONTAINS(err_msg(), "2-channel");
    dataset_close(&d);
    T_EQ_INT(dataset_open("synthetic:200:3x8x8:4", NULL, SPLIT_TRAIN, &d), 0);
    err_clear();
    T_EQ_INT(dataset_export_png(&d, dir, SPLIT_TRAIN, 2), -1); /* 2 samples cannot cover 4 classes */
    T_CONTAINS(err_msg(), "raise --limit");
    T_ASSERT(access(dir, F_OK) != 0); /* nothing written */
    /* a colour round trip */
    T_EQ_INT(dataset_export_png(&d, dir, SPLIT_TRAIN, 0), 0);
    T_EQ_INT(dataset_export_png(&d, dir, SPLIT_TEST, 0), 0);
    char name[1100];
    snprintf(name, sizeof name, "png:%s", dir);
    Dataset b;
    T_EQ_INT(dataset_open(name, NULL, SPLIT_TEST, &b), 0);
    int order[200], at = 0;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 200; i++)
            if (d.y[i] == k) order[at++] = i;
    /* floats of the synthetic set are not multiples of 1/255: compare within half a grey level */
    long bad = 0;
    for (int i = 0; i < b.n; i++) {
        bad += b.y[i] != d.y[order[i]];
        for (int j = 0; j < 192; j++) bad += fabsf(b.x[i * 192 + j] - d.x[order[i] * 192 + j]) > 0.5f / 255 + 1e-6f;
    }
    T_EQ_INT(b.n, 200); T_EQ_INT(b.c, 3); T_EQ_INT(bad, 0);
    dataset_close(&b);
    dataset_close(&d);
}

/* Same fix-up as tests/fuzz/fuzz_png.c: rewrite every chunk's CRC to match its bytes. */
static void fix_crcs(unsigned char *b, size_t n) {
    size_t at = 8;
    while (at + 12 <= n) {
        uint32_t len = (uint32_t)b[at] << 24 | (uint32_t)b[at + 1] << 16 | (uint32_t)b[at + 2] << 8 | b[at + 3];
        if (len > n - at - 12) break;
        put_be32(b + at + 8 + len, (uint32_t)crc32(0, b + at + 4, 4 + len));
        at += 12 + len;
    }
}

/* ---- fuzz regressions: every file in tests/data/regress/ goes through its parser without a crash ---- */
TEST(dataset_fuzz_regressions) {
    const char *dir = "tests/data/regress";
    DIR *dp = opendir(dir);
    T_ASSERT_MSG(dp != NULL, "%s missing (run from the repository root)", dir);
    if (!dp) return;
    struct dirent *e;
    int files = 0;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        size_t n;
        unsigned char *b = read_bytes(p, &n);
        if (!b) continue;
        files++;
        err_clear();
        int rc = 0;
        if (strncmp(e->d_name, "png-", 4) == 0) {
            PngImage im;
            rc = png_decode_mem(b, n, p, &im);
            if (rc == 0) free(im.pix);
            /* replay what fuzz_png.c decodes too: the input with every chunk CRC made to match */
            if (rc != 0 && n && b[n - 1] != 0) {
                fix_crcs(b, n);
                err_clear();
                if (png_decode_mem(b, n, p, &im) == 0) free(im.pix);
                else T_ASSERT_MSG(strstr(err_msg(), e->d_name) != NULL, "%s: message without file name: %s", p, err_msg());
                rc = 0;
            }
        } else if (strncmp(e->d_name, "idx-", 4) == 0) {
            IdxArray a;
            rc = idx_parse_mem(b, n, p, &a);
        } else if (strncmp(e->d_name, "cifar-", 6) == 0) {
            Dataset d;
            for (int kind = 0; kind < 3; kind++) {
                err_clear();
                if (cifar_parse_mem(b, n, p, kind, &d) == 0) dataset_close(&d);
            }
        } else if (strncmp(e->d_name, "suite-", 6) == 0 || strncmp(e->d_name, "plan-", 5) == 0 || strncmp(e->d_name, "ckpt-", 5) == 0) {
            free(b); /* replayed by inputs_fuzz_regressions (tests/test_inputs.c) */
            files--;
            continue;
        } else {
            T_ASSERT_MSG(0, "%s: regression files are named png-*, idx-*, cifar-* (here) or suite-*, plan-*, ckpt-* "
                         "(inputs_fuzz_regressions)", p);
        }
        if (rc != 0) T_ASSERT_MSG(strstr(err_msg(), e->d_name) != NULL, "%s: message without file name: %s", p, err_msg());
        free(b);
    }
    closedir(dp);
    T_ASSERT(files > 0);
}

/* ---- CLI: `concord data ...` ---- */
TEST(data_cli_info_and_export) {
    if (!have_exe()) { T_ASSERT_MSG(0, "concord binary not found at %s; build it with make concord", test_exe()); return; }
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd, "%s data info fashion-mnist --split test", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "10000");
    T_CONTAINS(out, "1x28x28");
    T_CONTAINS(out, "Ankle boot");
    T_CONTAINS(out, "channel 0 mean");
    snprintf(cmd, sizeof cmd, "%s data --help", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "usage: concord data info");
    char dir[1024];
    tpath(dir, sizeof dir, "cli_export");
    snprintf(cmd, sizeof cmd, "%s data export synthetic:40:3x8x8:4 --png %s", test_exe(), dir);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s data info png:%s --split test", test_exe(), dir);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "3x8x8");
    char args[2048];
    snprintf(args, sizeof args, "data export synthetic:40:3x8x8:4 --png %s", dir);
    EXPECT_CLI_ERROR(args, "cli_export/train: already exists", NULL);
    EXPECT_CLI_ERROR("data frobnicate", "unknown subcommand 'frobnicate'", NULL);
    EXPECT_CLI_ERROR("data info synthetic --split dev", "--split 'dev'", NULL);
    EXPECT_CLI_ERROR("data export synthetic", "--png DIR is required", NULL);
    EXPECT_CLI_ERROR("data info synthetic --frob 1", "unknown option --frob", NULL);
    EXPECT_CLI_ERROR("data", "missing subcommand", NULL);
}

TEST(data_cli_bad_inputs) {
    unsigned char img[16 + 3 * 20], lab[8 + 3];
    size_t ni = make_idx(img, 1, 3, 4, 5, 10), nl = make_idx(lab, 0, 3, 0, 0, 10);
    char dir[1024], args[2048], p[1200];
    struct { const char *rel; int what; const char *n1, *n2; } cases[] = {
        {"cli_trunc", 0, "train-images-idx3-ubyte: truncated", NULL},
        {"cli_magic", 1, "train-images-idx3-ubyte: not an IDX file", NULL},
        {"cli_swapped", 2, "train-images-idx3-ubyte: byte-swapped", NULL},
        {"cli_count", 3, "train-labels-idx1-ubyte: 2 labels but", NULL},
        {"cli_label", 4, "train-labels-idx1-ubyte: label 10", "out of range"},
        {"cli_isdir", 5, "train-images-idx3-ubyte: is a directory", NULL},
    };
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        unsigned char w[sizeof img], l[sizeof lab];
        memcpy(w, img, ni);
        memcpy(l, lab, nl);
        size_t wn = ni, ln = nl;
        switch (cases[c].what) {
        case 0: wn -= 10; break;
        case 1: w[0] = 'P'; break;
        case 2: w[0] = 3; w[1] = 8; w[2] = 0; w[3] = 0; break;
        case 3: ln = make_idx(l, 0, 2, 0, 0, 10); break;
        case 4: l[10] = 10; break;
        default: break;
        }
        idx_bad(cases[c].rel, w, wn, l, ln, dir, sizeof dir);
        if (cases[c].what == 5) {
            snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
            unlink(p);
            mkdirs(p);
        }
        snprintf(args, sizeof args, "data info mnist --data-dir %s", dir);
        EXPECT_CLI_ERROR(args, cases[c].n1, cases[c].n2);
    }
    /* PNG: bad CRC, different sizes, empty class folder; missing CIFAR */
    png_fixture_dir("cli_png_crc", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/a/1.png", dir);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    uint32_t len;
    long at = png_chunk(b, n, "IDAT", &len);
    if (at > 0) b[at] ^= 1;
    write_bytes(p, b, n);
    free(b);
    snprintf(args, sizeof args, "data info png:%s", dir);
    EXPECT_CLI_ERROR(args, "a/1.png: corrupt PNG", NULL);
    png_fixture_dir("cli_png_trunc", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/b/2.png", dir);
    b = read_bytes(p, &n);
    at = png_chunk(b, n, "IDAT", &len);
    write_bytes(p, b, at > 0 ? (size_t)at + len / 2 : 20); /* cut inside IDAT */
    free(b);
    snprintf(args, sizeof args, "data info png:%s", dir);
    EXPECT_CLI_ERROR(args, "b/2.png: corrupt PNG", "truncated");
    png_fixture_dir("cli_png_sizes", dir, sizeof dir);
    unsigned char g[25] = {0};
    snprintf(p, sizeof p, "%s/b/9.png", dir);
    T_EQ_INT(png_write(p, g, 5, 5, 1), 0);
    snprintf(args, sizeof args, "data info png:%s", dir);
    EXPECT_CLI_ERROR(args, "b/9.png: image is 5x5", "same size");
    png_fixture_dir("cli_png_empty", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/empty", dir);
    mkdirs(p);
    snprintf(args, sizeof args, "data info png:%s", dir);
    EXPECT_CLI_ERROR(args, "cli_png_empty/empty: empty class folder", NULL);
    /* unreadable path: the data dir is a file */
    snprintf(args, sizeof args, "data info mnist --data-dir %s/cli_count/train-labels-idx1-ubyte", test_tmpdir());
    EXPECT_CLI_ERROR(args, "train-labels-idx1-ubyte/train-images-idx3-ubyte.gz: cannot access", "Not a directory");
    tpath(dir, sizeof dir, "cli_no_cifar");
    mkdirs(dir);
    snprintf(args, sizeof args, "data info cifar10 --data-dir %s", dir);
    EXPECT_CLI_ERROR(args, "cli_no_cifar/data_batch_1.bin: no such file", "cifar");
}
