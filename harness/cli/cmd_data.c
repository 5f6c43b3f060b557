/* cmd_data.c -- `concord data info|export`: look at a dataset and turn it into a PNG folder tree.
 * Not for: training-time loading (dataset_open does that; this is only the command-line face).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/core.h"

static const char k_usage[] =
    "usage: concord data info D [--data-dir DIR] [--split train|test]\n"
    "       concord data export D --png DIR [--data-dir DIR] [--split train|test] [--limit N]\n"
    "\n"
    "  info    counts, image shape, class balance and per-channel mean/std of one split (default train)\n"
    "  export  writes DIR/<split>/<L>_<class>/<I>.png (L the label, I the example's index, each zero-padded to one\n"
    "          width: test/7_Sneaker/00019.png), read back by --dataset png:DIR with the same labels and class names\n"
    "          (the L_ prefix is dropped when read back); without --split\n"
    "          both splits are exported; --limit N keeps the first N samples of each split. Each split is\n"
    "          written into a temporary folder and renamed when complete; an existing DIR/<split> is an error.\n"
    "\n"
    "  D: " DATASET_NAMES "\n"
    "  --data-dir DIR  where the dataset's files are (default /usr/share/datasets/<name>)\n";

static void data_info_print(const Dataset *d, const char *split) {
    printf("dataset   %s (%s split)\n", d->name, split);
    printf("source    %s\n", d->source);
    printf("samples   %d\n", d->n);
    printf("shape     %dx%dx%d (CxHxW)\n", d->c, d->h, d->w);
    printf("classes   %d\n", d->classes);
    int *count = xcalloc((size_t)d->classes, sizeof(int));
    for (int i = 0; i < d->n; i++) count[d->y[i]]++;
    int lo = d->n, hi = 0;
    for (int k = 0; k < d->classes; k++) {
        if (count[k] < lo) lo = count[k];
        if (count[k] > hi) hi = count[k];
    }
    printf("balance   min %d, max %d per class\n", lo, hi);
    for (int k = 0; k < d->classes; k++)
        printf("  %3d %-30s %7d  %5.1f%%\n", k, d->class_names[k][0] ? d->class_names[k] : "-", count[k],
               d->n ? 100.0 * count[k] / d->n : 0.0);
    free(count);
    float *mean = xmalloc(sizeof(float) * (size_t)d->c), *std = xmalloc(sizeof(float) * (size_t)d->c);
    dataset_channel_stats(d, mean, std);
    for (int c = 0; c < d->c; c++) printf("channel %d mean %.6f std %.6f\n", c, mean[c], std[c]);
    free(mean);
    free(std);
}

static const OptSpec k_info_opts[] = {
    {"data-dir", "DIR", "where the dataset's files are (default /usr/share/datasets/<name>)", NULL},
    {"split", "train|test", "which split", "train"},
    {0}};
static const OptSpec k_export_opts[] = {
    {"png", "DIR", "where to write DIR/<split>/<L>_<class>/<I>.png, e.g. DIR/test/7_Sneaker/00019.png (required)", NULL},
    {"data-dir", "DIR", "where the dataset's files are (default /usr/share/datasets/<name>)", NULL},
    {"split", "train|test", "export only this split (default: both)", NULL},
    {"limit", "N", "export only the first N samples of each split (default: all)", NULL},
    {0}};

/* argv: after the command name, so argv[0] is the subcommand (commands.h). */
int cmd_data(int argc, char **argv) {
    if (argc < 1) {
        err_set("data: missing subcommand; use info or export (see concord data --help)");
        return err_die();
    }
    const char *sub = argv[0];
    if (str_eq(sub, "--help") || str_eq(sub, "-h") || str_eq(sub, "help")) {
        fputs(k_usage, stdout);
        return 0;
    }
    int is_info = str_eq(sub, "info");
    if (!is_info && !str_eq(sub, "export")) {
        err_set("data: unknown subcommand '%s'; use info or export (see concord data --help)", sub);
        return err_die();
    }
    Args a;
    int rc = args_parse_pos(&a, is_info ? "data info" : "data export", is_info ? "D" : "D --png DIR",
                            is_info ? k_info_opts : k_export_opts, 1, argc - 1, argv + 1);
    if (rc == 1) return 0; /* --help printed */
    if (rc != 0) return err_die();
    if (a.npos != 1) {
        err_set("data %s: give exactly one dataset, e.g. concord data %s fashion-mnist (see concord data --help)",
                sub, sub);
        return err_die();
    }
    const char *name = a.pos[0], *data_dir = arg_str(&a, "data-dir"), *split_s = arg_str(&a, "split");
    int split = -1;
    if (split_s && (split = dataset_split_parse(split_s)) < 0) {
        err_set("data %s: --split '%s' must be train or test", sub, split_s);
        return err_die();
    }
    if (is_info) {
        Dataset d;
        double t0 = now_seconds();
        if (dataset_open(name, data_dir, split, &d) != 0) return err_die();
        double dt = now_seconds() - t0;
        data_info_print(&d, split == SPLIT_TRAIN ? "train" : "test");
        printf("load time %.3f s\n", dt);
        dataset_close(&d);
        return 0;
    }
    const char *png = arg_str(&a, "png");
    if (!png) { err_set("data export: --png DIR is required (where to write the PNG tree)"); return err_die(); }
    long limit = 0;
    if (arg_set(&a, "limit") && arg_int(&a, "limit", 1, 1L << 30, &limit) != 0) return err_die();
    for (int s = SPLIT_TRAIN; s <= SPLIT_TEST; s++) {
        if (split >= 0 && s != split) continue;
        Dataset d;
        if (dataset_open(name, data_dir, s, &d) != 0) return err_die();
        int erc = dataset_export_png(&d, png, s, (int)limit);
        int n = limit > 0 && limit < d.n ? (int)limit : d.n;
        dataset_close(&d);
        if (erc != 0) return err_die();
        printf("wrote %d images to %s/%s\n", n, png, s == SPLIT_TRAIN ? "train" : "test");
    }
    return 0;
}
