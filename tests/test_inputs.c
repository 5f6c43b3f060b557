/* test_inputs.c -- bad input everywhere a user or a file can give it (issue 13, items 6-8): the general
 * rules of the option parser (decimal numbers, no stray arguments, no option twice, no empty value, comma
 * lists without empty or repeated items), options a command would silently ignore, suite files checked
 * job by job when planned, plan files checked line by line, checkpoint values, and the fuzz regressions of
 * the suite, plan and ckpt targets. Every refusal is one T_CLI_FAILS (counted by the runner): a non-zero
 * exit and the message a user sees. What must keep working next to each refusal is checked too. */
#define _GNU_SOURCE
#include <dirent.h>
#include <glob.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/png.h"
#include "harness/checkpoint.h"
#include "harness/cli/commands.h"
#include "harness/core.h"
#include "harness/suite/suite.h"
#include "rules/build.h"
#include "tests/test.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = xmalloc((size_t)n + 1);
    b[fread(b, 1, (size_t)n, f)] = 0;
    fclose(f);
    return b;
}

/* A small trained mlp (784 -> 4 -> 3 on 1x4x4 synthetic data, 2 linear layers) at DIR/name; 0 on success. */
static int small_ckpt(const char *name, char *path, size_t n) {
    char cmd[2048], out[4096];
    snprintf(path, n, "%s/%s", test_tmpdir(), name);
    if (access(path, F_OK) == 0) return 0;
    snprintf(cmd, sizeof cmd, "%s train --model mlp --hidden 4 --dataset synthetic:60:1x4x4:3 --val 10 --epochs 1 --batch 8 "
             "--probe 0 --no-db --quiet --out %s", test_exe(), path);
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "training the small checkpoint failed: %s", out);
    return rc;
}

#define DATA "--dataset synthetic:60:1x4x4:3 --val 10 --epochs 1 --batch 8 --probe 0 --no-db --quiet"

/* ---- the parser's general rules ---- */

TEST(inputs_numbers_decimal_only) {
    double d;
    long v;
    static const char *const bad_d[] = {"0x10", "0x1p3", "inf", "-inf", "nan", "infinity", " 1", "1 ", "1e", "e3", ".", "-", "+",
                                        "1.2.3", "--1", "1e400", "1,5", ""};
    for (size_t i = 0; i < ARRAY_LEN(bad_d); i++) T_ASSERT_MSG(parse_double(bad_d[i], &d) < 0, "parse_double accepted '%s'", bad_d[i]);
    static const char *const good_d[] = {"1", "-1", "+1", ".5", "5.", "1e-2", "1E+3", "0.010", "-0"};
    static const double want_d[] = {1, -1, 1, 0.5, 5, 0.01, 1000, 0.01, 0};
    for (size_t i = 0; i < ARRAY_LEN(good_d); i++) {
        T_ASSERT_MSG(parse_double(good_d[i], &d) == 0, "parse_double refused '%s'", good_d[i]);
        T_NEAR(d, want_d[i], 0);
    }
    static const char *const bad_i[] = {"0x10", "1e3", "1.0", " 1", "1 ", "+", "", "99999999999999999999"};
    for (size_t i = 0; i < ARRAY_LEN(bad_i); i++) T_ASSERT_MSG(parse_int(bad_i[i], -1000000, 1000000, &v) < 0, "parse_int accepted '%s'", bad_i[i]);
    T_ASSERT(parse_int("+7", 0, 10, &v) == 0 && v == 7);
    T_ASSERT(parse_int("-7", -10, 10, &v) == 0 && v == -7);
    /* through the command line: numbers are decimal only, for every command */
    T_CLI_FAILS("--lr 0x10: expected a decimal number", "train --model mlp --lr 0x10 " DATA);
    T_CLI_FAILS("--lr inf: expected a decimal number", "train --model mlp --lr inf " DATA);
    T_CLI_FAILS("--momentum  0.5: expected a decimal number", "train --model mlp --momentum ' 0.5' " DATA);
    T_CLI_FAILS("--limit 0x2: expected an integer", "train --model mlp --limit 0x2 " DATA);
    T_CLI_FAILS("--seed 1e3: expected an integer", "train --model mlp --seed 1e3 " DATA);
    char ck[600];
    if (small_ckpt("num.ckpt", ck, sizeof ck)) return;
    T_CLI_FAILS("--eps 0x1p-3: expected a number or a fraction", "attack --ckpt %s --eps 0x1p-3 --no-db", ck);
    T_CLI_FAILS("--eps 8/0x10: expected a number or a fraction", "attack --ckpt %s --eps 8/0x10 --no-db", ck);
    T_CLI_FAILS("--alpha r0x1: a relative step", "attack --ckpt %s --alpha r0x1 --no-db", ck);
    T_CLI_FAILS("--index 0x1: expected an integer", "job --plan x.tsv --index 0x1");
}

TEST(inputs_no_stray_arguments) {
    T_CLI_FAILS("concord train: unexpected argument 'extra'; this command takes only --options", "train extra --model mlp " DATA);
    T_CLI_FAILS("concord finetune: unexpected argument 'x.ckpt'", "finetune x.ckpt --rule usf");
    T_CLI_FAILS("concord attack: unexpected argument 'pgd'", "attack --ckpt x.ckpt pgd");
    T_CLI_FAILS("concord models: unexpected argument 'mlp'", "models mlp");
    T_CLI_FAILS("concord rules: unexpected argument 'bp'", "rules bp");
    T_CLI_FAILS("concord job: unexpected argument '3'", "job --plan x.tsv --index 0 3");
    T_CLI_FAILS("concord bench: unexpected argument 'all'", "bench all");
    T_CLI_FAILS("concord query: unexpected argument 'extra'", "query table extra --db x.db");
    T_CLI_FAILS("concord data info: unexpected argument 'mnist'", "data info fashion-mnist mnist");
    T_CLI_FAILS("concord suite: unexpected argument 'c.ini'", "suite plan a.ini c.ini");
    T_CLI_FAILS("concord plot: unexpected argument 'figures'", "plot figures --db x.db");
    T_CLI_FAILS("concord import: unexpected argument 'model.pt'", "import model.pt --model mlp");
    T_CLI_FAILS("concord help: unknown command 'frobnicate'", "help frobnicate");
    T_CLI_FAILS("concord help: unexpected argument 'extra'", "help train extra");
    char out[8192];
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s help train", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "usage: concord train");
}

TEST(inputs_options_once_and_not_empty) {
    T_CLI_FAILS("concord train: --lr is given twice; keep one", "train --model mlp --lr 0.1 --lr=0.2 " DATA);
    T_CLI_FAILS("concord attack: --eps is given twice", "attack --ckpt x.ckpt --eps 0.1 --eps 0.2");
    T_CLI_FAILS("concord train: --quiet is given twice", "train --model mlp --quiet " DATA);
    T_CLI_FAILS("concord train: --job-key needs a value (KEY), not an empty string", "train --model mlp --job-key '' " DATA);
    T_CLI_FAILS("concord train: --out needs a value (CKPT), not an empty string", "train --model mlp --out= " DATA);
    T_CLI_FAILS("concord attack: --grad needs a value", "attack --ckpt x.ckpt --grad ''");
}

TEST(inputs_comma_lists) {
    char ck[600];
    if (small_ckpt("list.ckpt", ck, sizeof ck)) return;
    T_CLI_FAILS("--eps 0.1,: empty item", "attack --ckpt %s --attack fgsm --eps 0.1, --no-db", ck);
    T_CLI_FAILS("--eps ,0.1: empty item", "attack --ckpt %s --attack fgsm --eps ,0.1 --no-db", ck);
    T_CLI_FAILS("--eps 0.1,,0.2: empty item", "attack --ckpt %s --attack fgsm --eps 0.1,,0.2 --no-db", ck);
    /* a repeated budget is an error, not two rows: the same evaluation twice (under one key, or two) */
    T_CLI_FAILS("--eps 0.1,0.1: '0.1' is listed twice; remove one", "attack --ckpt %s --attack fgsm --eps 0.1,0.1 --no-db", ck);
    T_CLI_FAILS("--eps 0.1,1/10: 0.1 and 1/10 are the same budget; keep one", "attack --ckpt %s --attack fgsm --eps 0.1,1/10 --no-db", ck);
    T_CLI_FAILS("--attack pgd,pgd: 'pgd' is listed twice", "attack --ckpt %s --attack pgd,pgd --no-db", ck);
    T_CLI_FAILS("--grad true,true: 'true' is listed twice", "attack --ckpt %s --attack fgsm --grad true,true --no-db", ck);
    T_CLI_FAILS("--transfer-label a,: empty item", "attack --ckpt %s --attack fgsm --grad transfer:%s --transfer-label a, --no-db", ck, ck);
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack fgsm --eps 0,0.1,8/255 --grad true,feedback --no-db --quiet", test_exe(), ck);
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "a clean list was refused: %s", out);
}

/* ---- options a command would silently ignore ---- */

TEST(inputs_train_refuses_ignored_options) {
    T_CLI_FAILS("concord train: --resume needs --out CKPT", "train --model mlp --resume " DATA);
    T_CLI_FAILS("concord train: --bits applies to --task hash", "train --model mlp --bits 7 " DATA);
    T_CLI_FAILS("concord train: --topk applies to --task hash", "train --model mlp --topk 5 " DATA);
    T_CLI_FAILS("concord train: --hash-eta applies to --task hash", "train --model mlp --hash-eta 0.5 " DATA);
    T_CLI_FAILS("concord train: --hidden does not apply to --model lenet5 (it applies to mlp)", "train --model lenet5 --hidden 16 " DATA);
    T_CLI_FAILS("concord train: --width does not apply to --model mlp (it applies to alexnet, vgg16, resnet18, resnet20)", "train --model mlp --width 0.5 " DATA);
    T_CLI_FAILS("concord train: --dropout does not apply to --model resnet20 (it applies to alexnet, vgg16)", "train --model resnet20 --dropout 0.1 " DATA);
    T_CLI_FAILS("--hidden 16,abc: 'abc' is not a width", "train --model mlp --hidden 16,abc " DATA);
    T_CLI_FAILS("--hidden 16,: expected comma-separated positive widths", "train --model mlp --hidden 16, " DATA);
    T_CLI_FAILS("--hidden 16,0: '0' is not a width", "train --model mlp --hidden 16,0 " DATA);
    T_CLI_FAILS("concord train: --gamma applies to --schedule step", "train --model mlp --gamma 0.5 " DATA);
    T_CLI_FAILS("concord train: --step-size applies to --schedule step", "train --model mlp --schedule cosine --step-size 3 " DATA);
    T_CLI_FAILS("concord train: --momentum applies to --optimizer sgd", "train --model mlp --optimizer adam --momentum 0.5 " DATA);
    T_CLI_FAILS("concord train: --nesterov applies to --optimizer sgd", "train --model mlp --optimizer adam --nesterov " DATA);
    T_CLI_FAILS("concord train: --db has no effect with --no-db", "train --model mlp --db x.db " DATA);
    T_CLI_FAILS("unknown model 'lenet9'", "train --model lenet9 " DATA);
    /* an --out that cannot be written fails before the first epoch, not after it */
    T_CLI_FAILS("is a directory, not a checkpoint file (--out wants a file path)", "train --model mlp --out %s " DATA, test_tmpdir());
    T_CLI_FAILS("/no/such/dir/x.ckpt: cannot write the checkpoint: directory /no/such/dir", "train --model mlp --out /no/such/dir/x.ckpt " DATA);
    /* a linear model is written --hidden none (an empty value is refused like any other) */
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "%s train --model mlp --hidden none " DATA, test_exe());
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "--hidden none: %s", out);
    /* and the options that apply still work together */
    snprintf(cmd, sizeof cmd, "%s train --model mlp --hidden 4 --schedule step --step-size 1 --gamma 0.5 --nesterov " DATA, test_exe());
    rc = test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "step schedule with nesterov: %s", out);
}

TEST(inputs_finetune_refuses_ignored_options) {
    char ck[600], cmd[2048], out[8192];
    if (small_ckpt("parent.ckpt", ck, sizeof ck)) return;
    /* the architecture, widths and weights are the parent's */
    T_CLI_FAILS("concord finetune: --model does not apply: the model (architecture, widths, weights) is the --from checkpoint's",
                "finetune --from %s --model lenet5 " DATA, ck);
    T_CLI_FAILS("concord finetune: --hidden does not apply", "finetune --from %s --hidden 32 " DATA, ck);
    T_CLI_FAILS("concord finetune: --width does not apply", "finetune --from %s --width 2 " DATA, ck);
    T_CLI_FAILS("concord finetune: --dropout does not apply", "finetune --from %s --dropout 0.1 " DATA, ck);
    T_CLI_FAILS("concord finetune: --init-seed does not apply", "finetune --from %s --init-seed 3 " DATA, ck);
    T_CLI_FAILS("--freeze 99: ", "finetune --from %s --freeze 99 " DATA, ck);
    T_CLI_FAILS("has 2 linear/conv layers; freeze at most 1 so that one still trains", "finetune --from %s --freeze 2 " DATA, ck);
    T_CLI_FAILS("concord finetune: --freeze 1001: expected an integer in [0, 1000]", "finetune --from %s --freeze 1001 " DATA, ck);
    /* --out the parent itself: by the same path and by another path to the same file */
    T_CLI_FAILS("is the --from checkpoint itself; write the fine-tuned model to another file", "finetune --from %s --out %s " DATA, ck, ck);
    T_CLI_FAILS("is the --from checkpoint itself", "finetune --from %s --out %s/./parent.ckpt " DATA, ck, test_tmpdir());
    T_CLI_FAILS("concord finetune: --new-head does not apply to --task hash", "finetune --from %s --task hash --new-head " DATA, ck);
    T_CLI_FAILS("concord train: --from/--new-head/--freeze belong to concord finetune", "train --model mlp --freeze 1 " DATA);
    /* the parent is untouched and a valid freeze trains */
    char sum0[17], sum1[17];
    T_ASSERT(file_sha_hex(ck, sum0) == 0);
    snprintf(cmd, sizeof cmd, "%s finetune --from %s --rule usf --freeze 1 --out %s/child.ckpt " DATA, test_exe(), ck, test_tmpdir());
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "finetune --freeze 1: %s", out);
    T_ASSERT(file_sha_hex(ck, sum1) == 0 && str_eq(sum0, sum1));
}

TEST(inputs_attack_refuses_ignored_options) {
    char ck[600];
    if (small_ckpt("atk.ckpt", ck, sizeof ck)) return;
    T_CLI_FAILS("--eot applies to --grad feedback", "attack --ckpt %s --attack pgd --eot 4 --grad true --no-db", ck);
    T_CLI_FAILS("--job-key has no effect with --no-db", "attack --ckpt %s --attack fgsm --job-key k --no-db", ck);
    T_CLI_FAILS("--queries-per-class and --topk apply to hashing checkpoints", "attack --ckpt %s --attack fgsm --topk 5 --no-db", ck);
    T_CLI_FAILS("--alpha 3: outside [0,1] for [0,1] pixel data; did you mean 3/255?", "attack --ckpt %s --attack pgd --alpha 3 --no-db", ck);
}

TEST(inputs_models_shape) {
    T_CLI_FAILS("--shape 0x0x0: expected CxHxW with C in 1..4096", "models --shape 0x0x0");
    T_CLI_FAILS("--shape 1x8: expected CxHxW", "models --shape 1x8");
    T_CLI_FAILS("--shape 1x8x8x8: expected CxHxW", "models --shape 1x8x8x8");
    T_CLI_FAILS("--shape 1x-8x8: expected CxHxW", "models --shape 1x-8x8");
    T_CLI_FAILS("--shape 1x8x8junk: expected CxHxW", "models --shape 1x8x8junk");
    /* a shape some architectures cannot take: the table says which, and the exit status says it too */
    T_CLI_FAILS("concord models: 2 of 6 architectures cannot be built for --shape 1x8x8", "models --shape 1x8x8");
    char cmd[600], out[8192];
    snprintf(cmd, sizeof cmd, "%s models --shape 3x32x32", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s models", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "resnet20");
}

TEST(inputs_png_set_needs_two_classes) {
    char dir[600], cls[700], png[800];
    snprintf(dir, sizeof dir, "%s/oneclass", test_tmpdir());
    snprintf(cls, sizeof cls, "%s/cat", dir);
    CHECK(dir_create(cls) == 0);
    unsigned char pix[8 * 8];
    for (int i = 0; i < 64; i++) pix[i] = (unsigned char)(i * 4);
    for (int k = 0; k < 4; k++) {
        snprintf(png, sizeof png, "%s/%d.png", cls, k);
        T_ASSERT(png_write(png, pix, 8, 8, 1) == 0);
    }
    T_CLI_FAILS("only one class folder ('cat'); a classification set needs at least 2", "data info png:%s", dir);
    T_CLI_FAILS("only one class folder ('cat')", "train --model mlp --dataset png:%s --val 1 --epochs 1 --no-db", dir);
}

/* ---- checkpoint values ---- */

/* Sets tensor `name` of checkpoint `path` to n floats of value v. */
static void set_tensor(const char *path, const char *name, float v, int n) {
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    float *b = xmalloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) b[i] = v;
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "UPDATE tensor SET data = ? WHERE name = ?", -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_blob(st, 1, b, (int)(sizeof(float) * (size_t)n), SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    CHECK(sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(db) == 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(b);
}

TEST(inputs_ckpt_refuses_bad_buffers) {
    char ck[600], bad[700], cmd[2048];
    if (small_ckpt("std.ckpt", ck, sizeof ck)) return;
    snprintf(bad, sizeof bad, "%s/std0.ckpt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "cp %s %s", ck, bad);
    CHECK(system(cmd) == 0);
    set_tensor(bad, "norm.std", 0.0f, 1);
    /* a std of 0 used to reach the trainer as Inf inputs and end as "diverged, lower --lr" */
    T_CLI_FAILS("std0.ckpt: tensor 'norm.std' holds 0 at channel 0; an input normalisation std must be positive",
                "finetune --from %s --rule usf --out %s/c.ckpt " DATA, bad, test_tmpdir());
    T_CLI_FAILS("std0.ckpt: tensor 'norm.std' holds 0", "attack --ckpt %s --attack fgsm --no-db", bad);
    set_tensor(bad, "norm.std", -0.5f, 1);
    T_CLI_FAILS("tensor 'norm.std' holds -0.5 at channel 0", "attack --ckpt %s --attack fgsm --no-db", bad);
    /* batch-norm running variance below 0 (a resnet20 saved in-process) */
    ModelSpec s;
    model_spec_default(&s, "resnet20", 1, 8, 8, 3);
    s.width = 0.125f;
    Model *m = model_create(&s, NULL, NULL, 1);
    T_ASSERT(m != NULL);
    if (!m) return;
    snprintf(bad, sizeof bad, "%s/bnvar.ckpt", test_tmpdir());
    CkptMeta meta = {0};
    meta_set(&meta, "dataset", "synthetic:40:1x8x8:3");
    T_ASSERT(ckpt_save(bad, m, &meta) == 0);
    const char *bn = NULL;
    int c = 0;
    for (int i = 0; i < m->ntensors && !bn; i++)
        if (strstr(m->tensors[i].name, "running_var")) { bn = m->tensors[i].name; c = (int)m->tensors[i].n; }
    T_ASSERT(bn != NULL);
    if (bn) {
        set_tensor(bad, bn, -1.0f, c);
        err_clear();
        Model *back = ckpt_load(bad, NULL, NULL, 0, 0, NULL);
        T_ASSERT(back == NULL);
        T_CONTAINS(err_msg(), "a batch-norm running variance cannot be negative");
        T_CONTAINS(err_msg(), bn);
        model_free(back);
        T_CLI_FAILS("a batch-norm running variance cannot be negative", "attack --ckpt %s --attack fgsm --no-db", bad);
    }
    model_free(m);
    err_clear();
    /* meta describing a model far bigger than the file: refused before anything is allocated */
    snprintf(bad, sizeof bad, "%s/huge.ckpt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "cp %s %s", ck, bad);
    CHECK(system(cmd) == 0);
    sqlite3 *db;
    CHECK(sqlite3_open(bad, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE meta SET value = '1048576' WHERE key = 'hidden'", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    T_CLI_FAILS("huge.ckpt: the meta describes mlp with", "attack --ckpt %s --attack fgsm --no-db", bad);
}

/* ---- suites: every option checked when planned, with the file and line ---- */

static const char *SUITE_HEAD =
    "[suite]\nname = t\ndatasets = synthetic:300:1x8x8:4\nmodels = mlp\nseeds = 0\n" /* lines 1-5 */
    "[pretrain]\nrules = bp\nepochs = 1\nhidden = 16\nval = 50\nprobe = 0\n"          /* lines 6-11 */
    "[finetune]\nrules = bp, usf\nepochs = 1\nval = 50\nprobe = 0\n";                 /* lines 12-16 */

/* Writes SUITE_HEAD + tail to DIR/name and returns the path. */
static const char *suite_file(const char *name, const char *tail) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    char *text = xmalloc(strlen(SUITE_HEAD) + strlen(tail) + 1);
    strcpy(text, SUITE_HEAD);
    strcat(text, tail);
    write_file(path, text);
    free(text);
    return path;
}

TEST(inputs_suite_plan_checks_every_option) {
    const char *p;
    /* attack options: the very checks concord attack makes, with the section and line */
    p = suite_file("eps8.ini", "[attack w]\nattacks = fgsm\neps = 0.1, 8\n");
    T_CLI_FAILS("eps8.ini:19: [attack w] --eps 8: outside [0,1] for [0,1] pixel data; did you mean 8/255?", "suite plan %s --out %s/o1", p, test_tmpdir());
    p = suite_file("alpha.ini", "[attack w]\nattacks = pgd\neps = 0.1\nalpha = 3\n");
    T_CLI_FAILS("alpha.ini:20: [attack w] --alpha 3: outside [0,1] for [0,1] pixel data; did you mean 3/255?", "suite plan %s --out %s/o1", p, test_tmpdir());
    p = suite_file("restarts.ini", "[attack w]\nattacks = pgd\neps = 0.1\nrestarts = 0\n");
    T_CLI_FAILS("restarts.ini:20: [attack w] concord attack: --restarts 0: expected an integer in [1, 1024]", "suite plan %s --out %s/o1", p, test_tmpdir());
    p = suite_file("queries.ini", "[attack s]\nattacks = square\neps = 0.1\nqueries = 0\n");
    T_CLI_FAILS("queries.ini:20: [attack s] concord attack: --queries 0: expected an integer", "suite plan %s --out %s/o1", p, test_tmpdir());
    p = suite_file("pinit.ini", "[attack s]\nattacks = square\neps = 0.1\np-init = 2\n");
    T_CLI_FAILS("pinit.ini:20: [attack s] concord attack: --p-init 2: expected a decimal number", "suite plan %s --out %s/o1", p, test_tmpdir());
    p = suite_file("steps.ini", "[attack w]\nattacks = fgsm\neps = 0.1\nsteps = 5\n");
    T_CLI_FAILS("steps.ini:20: [attack w] --steps does not apply to --attack fgsm", "suite plan %s --out %s/o1", p, test_tmpdir());
    p = suite_file("eot.ini", "[attack w]\nattacks = pgd\neps = 0.1\ngrads = true\neot = 4\n");
    T_CLI_FAILS("eot.ini:21: [attack w] --eot applies to --grad feedback", "suite plan %s --out %s/o1", p, test_tmpdir());
    p = suite_file("heps.ini", "[hash]\nrules = bp\nbits = 8\n[hash-attack h]\nattacks = hash-untargeted\neps = 16\n");
    T_CLI_FAILS("heps.ini:22: [hash-attack h] --eps 16: outside [0,1]", "suite plan %s --out %s/o1", p, test_tmpdir());
    /* model and training options */
    p = suite_file("ftmodel.ini", "width = 2\n");
    T_CLI_FAILS("ftmodel.ini:17: [finetune] concord finetune: --width does not apply", "suite plan %s --out %s/o1", p, test_tmpdir());
    p = suite_file("adam.ini", "optimizer = adam\nmomentum.usf = 0.5\n");
    T_CLI_FAILS("adam.ini:18: [finetune] concord finetune: --momentum applies to --optimizer sgd", "suite plan %s --out %s/o1", p, test_tmpdir());
    p = suite_file("hbits.ini", "[hash]\nrules = bp\nbits = 8\nnew-head = true\n");
    T_CLI_FAILS("hbits.ini:20: [hash] unknown key 'new-head'", "suite plan %s --out %s/o1", p, test_tmpdir());
    char path[600];
    snprintf(path, sizeof path, "%s/hid.ini", test_tmpdir());
    write_file(path, "[suite]\nname=t\ndatasets=synthetic:300:1x8x8:4\nmodels=mlp\nseeds=0\n[pretrain]\nrules=bp\nhidden = 16,abc\n[finetune]\nrules=bp\n");
    T_CLI_FAILS("hid.ini:8: [pretrain] --hidden 16,abc: 'abc' is not a width", "suite plan %s --out %s/o1", path, test_tmpdir());
    snprintf(path, sizeof path, "%s/lenet.ini", test_tmpdir());
    write_file(path, "[suite]\nname=t\ndatasets=synthetic:300:1x8x8:4\nmodels=lenet5\nseeds=0\n[pretrain]\nrules=bp\nhidden = 16\n[finetune]\nrules=bp\n");
    T_CLI_FAILS("lenet.ini:8: [pretrain] hidden: no model of [suite] models reads it (it applies to mlp); remove it", "suite plan %s --out %s/o1", path, test_tmpdir());
    snprintf(path, sizeof path, "%s/hex.ini", test_tmpdir());
    write_file(path, "[suite]\nname=t\n[finetune]\nrules=bp\nlr = 0x10\n");
    T_CLI_FAILS("hex.ini:5: [finetune] lr = 0x10: expected a non-negative number", "suite plan %s", path);
    /* an option of another subcommand */
    T_CLI_FAILS("concord suite plan: --jobs applies to concord suite run", "suite plan suites/tiny.ini --jobs 2 --out %s/o2", test_tmpdir());
    T_CLI_FAILS("concord suite status: --engine applies to concord suite run", "suite status suites/tiny.ini --engine slurm --out %s/o2", test_tmpdir());
    T_CLI_FAILS("concord suite run: --verbose applies to concord suite status", "suite run suites/tiny.ini --verbose --out %s/o2", test_tmpdir());
    /* misleading before: a directory, an unclosed section header, a line inih would cut in two */
    T_CLI_FAILS("is a directory, not a suite file", "suite plan %s", test_tmpdir());
    snprintf(path, sizeof path, "%s/unclosed.ini", test_tmpdir());
    write_file(path, "[suite]\nname=t\n[pretrain]\nrules=bp\n[finetune\nrules=bp,usf\n");
    T_CLI_FAILS("unclosed.ini:5: '[finetune' is not a section header: the ']' is missing", "suite plan %s", path);
    write_file(path, "[suite]\nname=t\n[]\nrules=bp\n");
    T_CLI_FAILS("unclosed.ini:3: '[]': a section needs a name", "suite plan %s", path);
    write_file(path, "[suite] name=t\n");
    T_CLI_FAILS("unclosed.ini:1: text after the section header [suite]", "suite plan %s", path);
    char *longl = xmalloc(400);
    snprintf(longl, 400, "[suite]\nname=t\nseeds = 0");
    for (int i = 1; i < 80; i++) snprintf(longl + strlen(longl), 400 - strlen(longl), ",%d", i);
    strcat(longl, "\n");
    write_file(path, longl);
    free(longl);
    T_CLI_FAILS("unclosed.ini:3: the line is longer than", "suite plan %s", path);
}

TEST(inputs_suite_plan_then_job_runs) {
    char out[600], cmd[2048], buf[16384], path[700];
    /* a grid of mlp and lenet5 with hidden: lenet5's training jobs do not get --hidden */
    snprintf(path, sizeof path, "%s/mixed.ini", test_tmpdir());
    write_file(path, "[suite]\nname=m\ndatasets=synthetic:200:1x12x12:3\nmodels=mlp, lenet5\nseeds=0\n"
                     "[pretrain]\nrules=bp\nepochs=1\nhidden=8\nval=20\nprobe=0\n[finetune]\nrules=bp\nepochs=1\nval=20\nprobe=0\n"
                     "[attack a]\nattacks=fgsm\neps=0.1\nlimit=10\n");
    Suite s;
    SuitePlan p;
    T_ASSERT_MSG(suite_load(path, &s) == 0 && suite_plan(&s, "/o", "/o/db", &p) == 0, "%s", err_msg());
    int seen = 0;
    for (int i = 0; i < p.n; i++) {
        const SuiteJob *j = &p.jobs[i];
        if (j->kind != JOB_TRAIN) continue;
        int has = 0;
        for (int k = 0; k < j->argc; k++) has |= str_eq(j->argv[k], "--hidden");
        T_ASSERT_MSG(has == (strstr(j->desc, " mlp ") != NULL), "%s: --hidden %s", j->desc, has ? "given" : "missing");
        seen++;
    }
    T_EQ_INT(seen, 2);
    T_EQ_INT(suite_plan_check(&s, &p, cmd_job_check), 0);
    suite_plan_free(&p);
    /* suite plan makes what the jobs write into, so the plan's own hint works: job 0 trains and writes its
       checkpoint */
    snprintf(out, sizeof out, "%s/planned", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s suite plan %s --out %s", test_exe(), path, out);
    int rc = test_run(cmd, buf, sizeof buf);
    T_ASSERT_MSG(rc == 0, "suite plan: %s", buf);
    char d[800];
    snprintf(d, sizeof d, "%s/ckpt", out);
    struct stat st;
    T_ASSERT_MSG(stat(d, &st) == 0 && S_ISDIR(st.st_mode), "%s was not created", d);
    snprintf(d, sizeof d, "%s/logs", out);
    T_ASSERT_MSG(stat(d, &st) == 0 && S_ISDIR(st.st_mode), "%s was not created", d);
    snprintf(cmd, sizeof cmd, "%s job --plan %s/plan.tsv --index 0", test_exe(), out);
    rc = test_run(cmd, buf, sizeof buf);
    T_ASSERT_MSG(rc == 0, "job 0: %s", buf);
    SuitePlan q;
    snprintf(d, sizeof d, "%s/plan.tsv", out);
    T_ASSERT_MSG(suite_plan_read(d, &q) == 0, "%s", err_msg());
    if (q.n) T_ASSERT_MSG(file_exists(q.jobs[0].ckpt), "job 0 did not write %s", q.jobs[0].ckpt);
    suite_plan_free(&q);
    err_clear();
}

/* ---- plan files: read line by line, refused with the file and line ---- */

/* Writes text with line `ln` (1-based) replaced by repl (NULL: removed) to DIR/name; returns the path. */
static const char *plan_variant(const char *name, const char *text, int ln, const char *repl) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    CHECK(f);
    int cur = 1;
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p + 1) : strlen(p);
        if (cur != ln) fwrite(p, 1, len, f);
        else if (repl) fputs(repl, f);
        p += len;
        cur++;
    }
    fclose(f);
    return path;
}

/* Line ln of text (without its newline), in a static buffer. */
static char *plan_line(const char *text, int ln) {
    static char buf[1 << 15];
    const char *p = text;
    for (int i = 1; i < ln && p; i++) p = strchr(p, '\n'), p = p ? p + 1 : NULL;
    if (!p) return NULL;
    size_t len = strcspn(p, "\n");
    snprintf(buf, sizeof buf, "%.*s", (int)len, p);
    return buf;
}

/* Replaces the first `from` in s by `to` (in place; s has room). */
static void replace_in(char *s, const char *from, const char *to) {
    char *at = strstr(s, from);
    CHECK(at);
    memmove(at + strlen(to), at + strlen(from), strlen(at + strlen(from)) + 1);
    memcpy(at, to, strlen(to));
}

TEST(inputs_plan_file_refused) {
    char out[600], cmd[2048], buf[8192], plan[700];
    snprintf(out, sizeof out, "%s/pf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s suite plan suites/tiny.ini --out %s", test_exe(), out);
    T_EQ_INT(test_run(cmd, buf, sizeof buf), 0);
    snprintf(plan, sizeof plan, "%s/plan.tsv", out);
    char *text = read_text(plan);
    T_ASSERT(text != NULL);
    if (!text) return;
    /* the plan as written runs (dry) */
    snprintf(cmd, sizeof cmd, "%s job --plan %s --index 0 --dry-run", test_exe(), plan);
    T_EQ_INT(test_run(cmd, buf, sizeof buf), 0);
    const char *p;
    p = plan_variant("v1.tsv", text, 1, "#concord-plan\t1\n");
    T_CLI_FAILS("v1.tsv:1: plan format '1', this concord reads format 2; regenerate the plan", "job --plan %s --index 0", p);
    p = plan_variant("notplan.tsv", text, 1, "index\tkey\n");
    T_CLI_FAILS("notplan.tsv:1: not a Concord plan file", "job --plan %s --index 0", p);
    p = plan_variant("nojobs.tsv", text, 5, NULL);
    T_CLI_FAILS("nojobs.tsv:6: a job before the #out, #db and #jobs headers", "job --plan %s --index 0", p);
    /* the last job line lost: the count in the header says so */
    int nlines = 0;
    for (const char *c = text; *c; c++) nlines += *c == '\n';
    p = plan_variant("short.tsv", text, nlines, NULL);
    T_CLI_FAILS("short.tsv: 6 jobs, the header says 7: the file is cut short", "job --plan %s --index 0", p);
    /* a line cut in the middle: with its newline (too few arguments), without (the end of the file) */
    char *l7 = xstrdup(plan_line(text, 7));
    char cut[4096];
    snprintf(cut, sizeof cut, "%.*s\n", (int)(strstr(l7, "--out") - l7), l7);
    p = plan_variant("cut.tsv", text, 7, cut);
    T_CLI_FAILS("cut.tsv:7: job 0: ", "job --plan %s --index 0", p);
    T_CLI_FAILS("(cut short or edited)", "job --plan %s --index 0", p);
    free(l7);
    snprintf(cmd, sizeof cmd, "head -c %zu %s > %s/nonl.tsv", strlen(text) - 20, plan, test_tmpdir());
    CHECK(system(cmd) == 0);
    T_CLI_FAILS("nonl.tsv:13: the line is cut short (no newline at the end of the file)", "job --plan %s/nonl.tsv --index 0", test_tmpdir());
    /* what a job's kind needs, even with a consistent argument count */
    char line[1 << 14];
    snprintf(line, sizeof line, "%s\n", plan_line(text, 7));
    replace_in(line, "--job-key\tt-", "--job-kex\tt-");
    p = plan_variant("key.tsv", text, 7, line);
    T_CLI_FAILS("key.tsv:7: job t-", "job --plan %s --index 0", p);
    T_CLI_FAILS("has no --job-key", "job --plan %s --index 0", p);
    snprintf(line, sizeof line, "%s\n", plan_line(text, 7));
    replace_in(line, "\t--out\t", "\t--oot\t");
    p = plan_variant("out.tsv", text, 7, line);
    T_CLI_FAILS("out.tsv:7: train job t-", "job --plan %s --index 0", p);
    snprintf(line, sizeof line, "%s\n", plan_line(text, 7));
    replace_in(line, "\ttrain\t-\t", "\ttrain\t0x\t");
    p = plan_variant("deps.tsv", text, 7, line);
    T_CLI_FAILS("deps.tsv:7: job 0: dependency '0x' is not an index", "job --plan %s --index 0", p);
    snprintf(line, sizeof line, "%s\n", plan_line(text, 8));
    char *tab = strchr(line, '\t');
    tab = strchr(tab + 1, '\t');
    tab = strchr(tab + 1, '\t'); /* deps column */
    char fixed[1 << 14];
    snprintf(fixed, sizeof fixed, "%.*s\t1,1%s", (int)(tab - line), line, strchr(tab + 1, '\t'));
    p = plan_variant("deps2.tsv", text, 8, fixed);
    T_CLI_FAILS("deps2.tsv:8: job 1: dependency 1 is not an earlier job", "job --plan %s --index 1", p);
    snprintf(line, sizeof line, "%s\n", plan_line(text, 7));
    line[0] = '3';
    p = plan_variant("index.tsv", text, 7, line);
    T_CLI_FAILS("index.tsv:7: index '3' where job 0 was expected", "job --plan %s --index 0", p);
    snprintf(line, sizeof line, "%s\n", plan_line(text, 7));
    replace_in(line, "\ttrain\t", "\ttrian\t");
    p = plan_variant("kind.tsv", text, 7, line);
    T_CLI_FAILS("kind.tsv:7: job 0: unknown job kind 'trian'", "job --plan %s --index 0", p);
    /* an edited option: the job's own command checks it before anything runs */
    snprintf(line, sizeof line, "%s\n", plan_line(text, 7));
    replace_in(line, "--epochs\t1", "--epochs\tten");
    p = plan_variant("opt.tsv", text, 7, line);
    T_CLI_FAILS("opt.tsv:7: job 0: concord train: --epochs ten: expected an integer", "job --plan %s --index 0", p);
    p = plan_variant("empty.tsv", "", 1, NULL);
    T_CLI_FAILS("empty.tsv: empty plan file", "job --plan %s --index 0", p);
    T_CLI_FAILS("is a directory, not a plan file", "job --plan %s --index 0", out);
    T_CLI_FAILS("--index 7 is out of range; the plan has 7 jobs", "job --plan %s --index 7", plan);
    free(text);
}

/* ---- fuzz regressions of the suite, plan and ckpt targets (tests/data/regress/{suite,plan,ckpt}-*) ---- */

TEST(inputs_fuzz_regressions) {
    const char *dir = "tests/data/regress";
    DIR *dp = opendir(dir);
    T_ASSERT_MSG(dp != NULL, "%s missing (run from the repository root)", dir);
    if (!dp) return;
    int files = 0;
    for (struct dirent *e; (e = readdir(dp)) != NULL;) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        err_clear();
        int rc = 0, known = 1;
        if (strncmp(e->d_name, "suite-", 6) == 0) {
            Suite *s = xcalloc(1, sizeof *s);
            if ((rc = suite_load(p, s)) == 0) {
                SuitePlan pl;
                T_ASSERT(suite_plan(s, "/o", "/o/db", &pl) == 0);
                rc = suite_plan_check(s, &pl, cmd_job_check);
                suite_plan_free(&pl);
            }
            free(s);
        } else if (strncmp(e->d_name, "plan-", 5) == 0) {
            SuitePlan pl;
            if ((rc = suite_plan_read(p, &pl)) == 0) suite_plan_free(&pl);
        } else if (strncmp(e->d_name, "ckpt-", 5) == 0) {
            Model *m = ckpt_load(p, NULL, NULL, 0, 1, NULL);
            rc = m ? 0 : -1;
            model_free(m);
        } else {
            known = 0;
        }
        if (!known) continue;
        files++;
        if (rc != 0) {
            T_ASSERT_MSG(strstr(err_msg(), e->d_name) != NULL, "%s: message without file name: %s", p, err_msg());
            T_ASSERT_MSG(!strchr(err_msg(), '\n'), "%s: message is not one line: %s", p, err_msg());
        }
    }
    closedir(dp);
    T_ASSERT(files >= 3);
    err_clear();
}

/* Every libFuzzer target, as make links it with tests/fuzz/replay.c (build/<config>/replay/, beside this
 * binary), runs on its seed corpus and its regression inputs without failing. `make fuzz` (clang and
 * libFuzzer, minutes) is the only other build of the targets: a link break there went unseen for a round. */
TEST(fuzz_targets_link_and_replay_their_seeds) {
    char self[1024], dir[1024], cmd[4096], out[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    T_ASSERT(n > 0);
    if (n <= 0) return;
    self[n] = 0;
    snprintf(dir, sizeof dir, "%s", self);
    *strrchr(dir, '/') = 0;
    /* the targets as the Makefile finds them: tests/fuzz/fuzz_T.c */
    glob_t g;
    const int found = glob("tests/fuzz/fuzz_*.c", 0, NULL, &g) == 0;
    T_ASSERT_MSG(found, "no tests/fuzz/fuzz_*.c (run from the repository root)");
    if (!found) return;
    T_ASSERT(g.gl_pathc >= 6);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char t[64];
        snprintf(t, sizeof t, "%s", g.gl_pathv[i] + strlen("tests/fuzz/fuzz_"));
        t[strlen(t) - 2] = 0; /* ".c" */
        char exe[1200];
        snprintf(exe, sizeof exe, "%s/replay/fuzz_%s", dir, t);
        T_ASSERT_MSG(access(exe, X_OK) == 0, "%s missing: `make test` builds it (make fuzz-replay)", exe);
        if (access(exe, X_OK) != 0) continue;
        /* the inputs it should see: the seeds and this target's regressions */
        snprintf(cmd, sizeof cmd, "ls tests/fuzz/corpus/%s | wc -l; ls tests/data/regress | grep -c '^%s-' || true", t, t);
        T_EQ_INT(test_run(cmd, out, sizeof out), 0);
        long seeds = 0, regress = 0;
        T_ASSERT(sscanf(out, "%ld %ld", &seeds, &regress) == 2);
        T_ASSERT_MSG(seeds >= 2, "%s: %ld seeds", t, seeds);
        snprintf(cmd, sizeof cmd, "OPENBLAS_NUM_THREADS=1 %s tests/fuzz/corpus/%s %s%s%s 2>&1", exe, t,
                 regress ? "tests/data/regress/" : "", regress ? t : "", regress ? "-*" : "");
        const int rc = test_run(cmd, out, sizeof out);
        T_ASSERT_MSG(rc == 0, "fuzz target %s failed on its seeds or regressions (%s):\n%s", t, cmd, out);
        char want[64];
        snprintf(want, sizeof want, "replay: %ld inputs", seeds + regress);
        T_CONTAINS(out, want);
    }
    globfree(&g);
    /* canaries: what the replay cannot read, or nothing to replay, fails in one line naming it */
    snprintf(cmd, sizeof cmd, "%s/replay/fuzz_idx tests/fuzz/corpus/no-such-target 2>&1", dir);
    T_EQ_INT(test_run(cmd, out, sizeof out), 1);
    T_CONTAINS(out, "cannot read tests/fuzz/corpus/no-such-target");
    snprintf(cmd, sizeof cmd, "mkdir -p %s/empty-corpus && %s/replay/fuzz_idx %s/empty-corpus 2>&1", test_tmpdir(), dir,
             test_tmpdir());
    T_EQ_INT(test_run(cmd, out, sizeof out), 1);
    T_CONTAINS(out, "no input files");
}
