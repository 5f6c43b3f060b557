/* pngdir.c -- image-folder datasets: DIR/<class>/<file>.png (or DIR/train/<class>/<file>.png and
 * DIR/test/<class>/<file>.png when DIR/train or DIR/test exists).
 * Rules, all checked before anything is returned:
 *   - classes are the sub-folder names sorted byte-wise (strcmp); label k = k-th name; hidden entries
 *     (names starting with '.') and plain files next to the class folders are ignored;
 *   - inside a class folder only files ending in ".png" (any case) are read, in sorted name order;
 *     other files are ignored so READMEs and thumbnails do no harm; a folder with no .png is an error;
 *   - samples are ordered class by class, then by file name;
 *   - the first image decides the channel count: grey (with or without alpha) -> 1 channel, anything
 *     else -> 3. Later RGB images in a grey set become grey by ITU-R BT.601 luma
 *     (299R + 587G + 114B)/1000 rounded; grey images in a colour set are replicated to R=G=B. Alpha is
 *     dropped (not composited over any background);
 *   - every image must have the same width and height;
 *   - with both train/ and test/, their class folder names must be the same.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "harness/core.h"
#include "datasets/formats.h"

typedef struct Names { char **v; int n, cap; } Names;

static void names_add(Names *s, const char *name) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        char **nv = xmalloc((size_t)s->cap * sizeof(char *));
        if (s->n) memcpy(nv, s->v, (size_t)s->n * sizeof(char *));
        free(s->v);
        s->v = nv;
    }
    s->v[s->n++] = xstrdup(name);
}
static void names_free(Names *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_png_ext(const char *name) {
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".png") == 0;
}

/* want_dirs: list sub-directories (classes); else regular files ending in .png. Sorted. */
static int list_dir(const char *path, int want_dirs, Names *out) {
    memset(out, 0, sizeof *out);
    DIR *dp = opendir(path);
    if (!dp) return err_set("%s: cannot open directory: %s; check the path and its permissions", path, strerror(errno));
    struct dirent *e;
    char sub[4096];
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        struct stat st;
        if (stat(sub, &st) != 0) {
            if (want_dirs) continue; /* dangling symlink next to class folders: ignored */
            if (!has_png_ext(e->d_name)) continue;
            int er = errno;
            closedir(dp);
            names_free(out);
            return err_set("%s: cannot access: %s; fix or remove it", sub, strerror(er));
        }
        if (want_dirs ? S_ISDIR(st.st_mode) : (S_ISREG(st.st_mode) && has_png_ext(e->d_name)))
            names_add(out, e->d_name);
        else if (!want_dirs && S_ISDIR(st.st_mode) && has_png_ext(e->d_name)) {
            closedir(dp);
            names_free(out);
            return err_set("%s: is a directory, expected a PNG file; rename or remove it", sub);
        }
    }
    closedir(dp);
    if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return 0;
}

static int list_classes(const char *root, Names *cls) {
    if (list_dir(root, 1, cls) != 0) return -1;
    if (cls->n == 0) {
        names_free(cls);
        return err_set("%s: no class folders; a PNG set is DIR/<class>/<file>.png (one sub-folder per class)", root);
    }
    if (cls->n == 1) { /* every label 0: training "succeeds" at 100% and every attack flips nothing */
        int rc = err_set("%s: only one class folder ('%s'); a classification set needs at least 2 (one sub-folder per class)",
                         root, cls->v[0]);
        names_free(cls);
        return rc;
    }
    if (cls->n > DATASET_MAX_CLASSES) {
        int n = cls->n;
        names_free(cls);
        return err_set("%s: %d class folders, more than Concord's limit of %d; merge classes or remove folders",
                       root, n, DATASET_MAX_CLASSES);
    }
    return 0;
}

static void convert(const PngImage *im, int want_c, float *dst /* (want_c, h, w) */) {
    size_t hw = (size_t)im->w * im->h;
    const unsigned char *p = im->pix;
    if (want_c == im->channels) {
        for (size_t j = 0; j < hw; j++)
            for (int c = 0; c < want_c; c++) dst[(size_t)c * hw + j] = byte_to_unit[p[j * want_c + c]];
    } else if (want_c == 3) { /* grey -> RGB */
        for (size_t j = 0; j < hw; j++) dst[j] = dst[hw + j] = dst[2 * hw + j] = byte_to_unit[p[j]];
    } else { /* RGB -> grey, BT.601 luma */
        for (size_t j = 0; j < hw; j++) {
            unsigned v = (299u * p[3 * j] + 587u * p[3 * j + 1] + 114u * p[3 * j + 2] + 500u) / 1000u;
            dst[j] = byte_to_unit[v > 255 ? 255 : v];
        }
    }
}

int pngdir_open(const char *dir, int split, Dataset *out) {
    memset(out, 0, sizeof *out);
    if (!*dir) return err_set("png:: no directory given; use png:DIR with DIR/<class>/*.png");
    struct stat st;
    if (stat(dir, &st) != 0)
        return err_set("%s: %s; png:DIR needs a folder of class sub-folders of PNG files", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return err_set("%s: is not a directory; png:DIR needs a folder of class sub-folders of PNG files", dir);
    char root[2048], other[2048];
    const char *sname = split == SPLIT_TRAIN ? "train" : "test", *oname = split == SPLIT_TRAIN ? "test" : "train";
    snprintf(root, sizeof root, "%s/%s", dir, sname);
    snprintf(other, sizeof other, "%s/%s", dir, oname);
    int split_mode = is_dir(root) || is_dir(other);
    if (split_mode && !is_dir(root))
        return err_set("%s: missing; %s has a %s/ folder so it needs %s/ too (or put the class folders "
                       "directly in %s)", root, dir, oname, sname, dir);
    if (!split_mode) snprintf(root, sizeof root, "%s", dir);

    Names cls = {0};
    Names *per = NULL;
    PngImage im = {0};
    int rc = -1, ncls = 0;
    if (list_classes(root, &cls) != 0) return -1;
    ncls = cls.n;
    if (split_mode && is_dir(other)) {
        Names oc;
        if (list_classes(other, &oc) != 0) goto done;
        int same = oc.n == cls.n;
        for (int i = 0; same && i < cls.n; i++) same = str_eq(oc.v[i], cls.v[i]);
        if (!same) {
            const char *diff = NULL, *where = other;
            for (int i = 0; !diff && i < cls.n; i++)
                if (!bsearch(&cls.v[i], oc.v, (size_t)oc.n, sizeof(char *), cmp_str)) diff = cls.v[i];
            for (int i = 0; !diff && i < oc.n; i++)
                if (!bsearch(&oc.v[i], cls.v, (size_t)cls.n, sizeof(char *), cmp_str)) { diff = oc.v[i]; where = root; }
            err_set("%s: has no class folder '%s'; train/ and test/ must have the same class folders",
                    where, diff ? diff : "?");
            names_free(&oc);
            goto done;
        }
        names_free(&oc);
    }
    per = xcalloc((size_t)ncls, sizeof(Names));
    int64_t total = 0;
    char path[4096];
    for (int k = 0; k < ncls; k++) {
        snprintf(path, sizeof path, "%s/%s", root, cls.v[k]);
        if (list_dir(path, 0, &per[k]) != 0) goto done;
        if (per[k].n == 0) {
            err_set("%s: empty class folder (no .png files); add images or remove the folder", path);
            goto done;
        }
        total += per[k].n;
    }
    if (total > DATASET_MAX_SAMPLES) {
        err_set("%s: %lld images is more than Concord's limit of %lld per split", root, (long long)total,
                (long long)DATASET_MAX_SAMPLES);
        goto done;
    }
    char first[4096];
    int c = 0, h = 0, w = 0;
    int64_t i = 0;
    for (int k = 0; k < ncls; k++) {
        for (int f = 0; f < per[k].n; f++, i++) {
            snprintf(path, sizeof path, "%s/%s/%s", root, cls.v[k], per[k].v[f]);
            if (png_read_file(path, &im) != 0) goto done;
            if (i == 0) {
                c = im.channels == 1 ? 1 : 3;
                h = im.h;
                w = im.w;
                int64_t vals;
                if (mul_capped(total, (int64_t)c * h * w, DATASET_MAX_VALUES, &vals) != 0) {
                    err_set("%s: %lld images of %dx%dx%d is more than Concord's limit of %lld values; use fewer "
                            "or smaller images", root, (long long)total, c, h, w, (long long)DATASET_MAX_VALUES);
                    goto done;
                }
                dataset_alloc(out, (int)total, c, h, w, ncls);
                snprintf(first, sizeof first, "%s", path);
            } else if (im.w != w || im.h != h) {
                err_set("%s: image is %dx%d but %s is %dx%d; all images of a set must have the same size "
                        "(resize them)", path, im.w, im.h, first, w, h);
                goto done;
            }
            convert(&im, c, out->x + (size_t)i * c * h * w);
            out->y[i] = k;
            free(im.pix);
            im.pix = NULL;
        }
    }
    /* the folders `concord data export` writes are "<label>_<name>" (0_T-shirt-top ... 9_Ankle-boot): when
       every folder is the label in order then '_', the class name is what follows (the order is the labels') */
    int exported = ncls > 0;
    for (int k = 0; k < ncls && exported; k++) {
        char *end = NULL;
        long lab = strtol(cls.v[k], &end, 10);
        exported = end != cls.v[k] && *end == '_' && end[1] && lab == k;
    }
    for (int k = 0; k < ncls; k++)
        snprintf(out->class_names[k], 32, "%s", exported ? strchr(cls.v[k], '_') + 1 : cls.v[k]);
    snprintf(out->source, sizeof out->source, "%.511s", root);
    rc = 0;
done:
    free(im.pix);
    if (per) for (int k = 0; k < ncls; k++) names_free(&per[k]);
    free(per);
    names_free(&cls);
    if (rc != 0) dataset_close(out);
    return rc;
}
