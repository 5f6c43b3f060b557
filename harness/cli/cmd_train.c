/* cmd_train.c -- `concord train`, `concord finetune`, `concord models`, `concord rules`.
 * One pipeline for both training commands: data (with a seeded validation split taken from the
 * training set), model (built, or loaded from a parent checkpoint), the shared trainer, a checkpoint
 * after every epoch (write-temp-then-rename, so a killed run resumes with --resume), the results
 * database, and the final test accuracy. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rules/build.h"
#include "harness/checkpoint.h"
#include "harness/cli/cli.h"
#include "harness/hash.h"
#include "harness/cli/commands.h"
#include "harness/cli/progress.h"
#include "harness/cli/record.h"
#include "harness/train.h"

static const OptSpec TRAIN_OPTS[] = {
    {"model", "M", "architecture (concord models)", "lenet5"},
    {"dataset", "D", DATASET_NAMES " (finetune: default the parent's)", "fashion-mnist"},
    {"classes", "LIST", "use only these classes, relabelled 0..k-1 in this order: 0-4, 5,6,7,8,9 (finetune: default the parent's subset when --dataset is not given)", NULL},
    {"data-dir", "DIR", "where the dataset files are (default: the dataset's standard place)", NULL},
    {"rule", "R", "learning rule (concord rules)", "bp"},
    {"epochs", "N", "training epochs", "10"},
    {"batch", "N", "batch size", "128"},
    {"lr", "X", "learning rate", "0.01"},
    {"momentum", "X", "SGD momentum", "0.9"},
    {"wd", "X", "weight decay (coupled, on every parameter)", "0"},
    {"nesterov", NULL, "Nesterov momentum", NULL},
    {"optimizer", "sgd|adam", "optimiser", "sgd"},
    {"schedule", "const|step|cosine", "learning-rate schedule", "const"},
    {"step-size", "N", "step schedule: epochs between decays", "10"},
    {"gamma", "X", "step schedule: decay factor", "0.1"},
    {"seed", "S", "data seed: split, shuffling, dropout, augmentation", "0"},
    {"init-seed", "S", "weight initialisation seed (default: --seed)", NULL},
    {"rule-seed", "S", "rule seed: random feedback draws (default: --seed)", NULL},
    {"usf-scale", "K", "usf scale: xavier|he-fanout|none|wstd|meanabs", "xavier"},
    {"magnitude", "K", "brsf/frsf magnitudes: uniform|halfnormal", "uniform"},
    {"brsf-resample", "K", "brsf redraw: batch|forward", "batch"},
    {"last-layer-bp", NULL, "exact BP in the classifier layer", NULL},
    {"width", "X", "channel multiplier of conv nets", "1"},
    {"hidden", "W,W", "mlp hidden widths (none: no hidden layer, a linear model)", "256,256"},
    {"dropout", "P", "alexnet/vgg16 classifier dropout", "0.5"},
    {"val", "N", "validation examples split off the training set", "5000"},
    {"limit", "N", "use only the first N training examples (after the split; 0 = all)", "0"},
    {"test-limit", "N", "evaluate on the first N test examples (0 = all)", "0"},
    {"augment", NULL, "random crop (pad 4) + horizontal flip (32x32 colour data)", NULL},
    {"probe", "N", "alignment probe batch size (0 = off)", "64"},
    {"max-loss", "X", "stop with a divergence error when a batch loss exceeds X (0 = only NaN/Inf)", "1e4"},
    {"threads", "N", "OpenBLAS threads (0 = OpenBLAS default)", "0"},
    {"out", "CKPT", "checkpoint to write (after every epoch)", NULL},
    {"resume", NULL, "continue from --out if it holds an unfinished run", NULL},
    {"db", "PATH", "results database (default out/concord.db or $CONCORD_DB)", NULL},
    {"no-db", NULL, "do not record in the results database", NULL},
    {"job-key", "KEY", "suite job key recorded with the run", NULL},
    {"quiet", NULL, "only the final line (test accuracy and checkpoint); no progress bar", NULL},
    {"task", "classify|hash", "classification (softmax) or deep-hashing retrieval (DPSH, tanh code layer)", "classify"},
    {"bits", "K", "hash: code length, 1..64 (the paper: 16, 32, 48, 64)", "32"},
    {"hash-eta", "X", "hash: DPSH quantisation weight", "0.1"},
    {"queries-per-class", "N", "hash: query examples per class (the rest of train+test is the database)", "100"},
    {"topk", "N", "hash: mAP@topk (0 = the whole database)", "0"},
    /* finetune only */
    {"from", "CKPT", "finetune: parent checkpoint", NULL},
    {"new-head", NULL, "finetune: new classifier for the dataset's class count", NULL},
    {"freeze", "N", "finetune: freeze the first N linear/conv layers", "0"},
    {0},
};

static int parse_rule_opts(const Args *a, RuleOpts *ro, uint64_t seed) {
    rule_opts_default(ro);
    static const char *keys[] = {"usf-scale", "magnitude", "brsf-resample"};
    for (size_t i = 0; i < ARRAY_LEN(keys); i++)
        if (rule_opts_parse(ro, keys[i], arg_str(a, keys[i])) < 0) return -1;
    ro->last_layer_bp = arg_flag(a, "last-layer-bp");
    ro->seed = seed;
    if (arg_set(a, "rule-seed") && arg_u64(a, "rule-seed", &ro->seed) < 0) return -1;
    return 0;
}

static int parse_train_opts(const Args *a, TrainOpts *o) {
    train_opts_default(o);
    long v;
    if (arg_int(a, "epochs", 0, 100000, &v) < 0) return -1;
    o->epochs = (int)v;
    if (arg_int(a, "batch", 1, 65536, &v) < 0) return -1;
    o->batch = (int)v;
    if (arg_double(a, "lr", 0, 100, &o->lr) < 0 || arg_double(a, "momentum", 0, 1, &o->momentum) < 0 ||
        arg_double(a, "wd", 0, 1, &o->weight_decay) < 0 || arg_double(a, "gamma", 0, 1, &o->gamma) < 0)
        return -1;
    if (arg_int(a, "step-size", 1, 100000, &v) < 0) return -1;
    o->step_size = (int)v;
    o->nesterov = arg_flag(a, "nesterov");
    const char *opt = arg_str(a, "optimizer"), *sch = arg_str(a, "schedule");
    if (str_eq(opt, "sgd")) o->optimizer = OPT_SGD;
    else if (str_eq(opt, "adam")) o->optimizer = OPT_ADAM;
    else return err_set("--optimizer %s: use sgd or adam", opt);
    if (str_eq(sch, "const")) o->schedule = SCHED_CONST;
    else if (str_eq(sch, "step")) o->schedule = SCHED_STEP;
    else if (str_eq(sch, "cosine")) o->schedule = SCHED_COSINE;
    else return err_set("--schedule %s: use const, step or cosine", sch);
    if (arg_u64(a, "seed", &o->seed) < 0) return -1;
    o->augment = arg_flag(a, "augment");
    if (arg_int(a, "probe", 0, 1024, &v) < 0) return -1;
    o->probe_n = (int)v;
    o->quiet = arg_flag(a, "quiet");
    if (arg_double(a, "max-loss", 0, 1e300, &o->max_loss) < 0) return -1;
    return 0;
}

/* Everything a train/finetune command line says that can be checked without data or files: ranges and
 * names, and every option the command would silently ignore (another task's, optimiser's or schedule's
 * option; a model option the architecture does not read; model options on finetune, whose architecture is
 * the parent's). run() starts with it, and the suite planner checks every job with it (cmd_train_check). */
typedef struct TrainCfg {
    const Rule *rule;
    TrainOpts to;
    RuleOpts ro;
    uint64_t init_seed;
    long threads, freeze, bits, topk;
    double width, dropout;
} TrainCfg;

/* 1 when a and b name the same file (the same path, or both exist and are one inode). */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (str_eq(a, b)) return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* --out must be writable before the first epoch, not after it: a file path whose directory exists. */
static int out_writable(const char *out) {
    if (file_not_dir(out, "checkpoint file (--out wants a file path)") < 0) return -1;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof dir, ".");
    if (access(dir, W_OK) != 0)
        return err_set("%s: cannot write the checkpoint: directory %s: %s; create it or choose another --out", out, dir, strerror(errno));
    return 0;
}

static int train_cfg(const Args *a, int finetune, TrainCfg *c) {
    const char *cmd = finetune ? "finetune" : "train";
    memset(c, 0, sizeof *c);
    if (finetune && !arg_str(a, "from")) return err_set("concord finetune: --from CKPT is required");
    if (!finetune && (arg_set(a, "from") || arg_set(a, "new-head") || arg_set(a, "freeze")))
        return err_set("concord train: --from/--new-head/--freeze belong to concord finetune");
    if (!(c->rule = rule_find(arg_str(a, "rule")))) {
        char all[128] = "";
        for (int i = 0; i < N_RULES; i++) { strcat(all, RULES[i]->name); strcat(all, i + 1 < N_RULES ? ", " : ""); }
        return err_set("unknown rule '%s'; available: %s (see concord rules)", arg_str(a, "rule"), all);
    }
    if (parse_train_opts(a, &c->to) < 0 || parse_rule_opts(a, &c->ro, c->to.seed) < 0) return -1;
    c->init_seed = c->to.seed;
    if (arg_set(a, "init-seed") && arg_u64(a, "init-seed", &c->init_seed) < 0) return -1;
    if (arg_int(a, "threads", 0, 256, &c->threads) < 0 || arg_int(a, "freeze", 0, 1000, &c->freeze) < 0) return -1;
    const char *task = arg_str(a, "task");
    long per;
    if (str_eq(task, "hash")) c->to.task = TASK_HASH;
    else if (!str_eq(task, "classify")) return err_set("--task %s: use classify or hash", task);
    if (c->to.task == TASK_HASH && (arg_int(a, "bits", 1, 64, &c->bits) < 0 || arg_double(a, "hash-eta", 0, 100, &c->to.hash_eta) < 0))
        return -1;
    if (arg_int(a, "topk", 0, 100000000, &c->topk) < 0 || arg_int(a, "queries-per-class", 1, 100000, &per) < 0) return -1;
    /* options this command line would silently ignore */
    static const char *const hash_only[] = {"bits", "hash-eta", "queries-per-class", "topk"};
    for (size_t i = 0; i < ARRAY_LEN(hash_only); i++)
        if (c->to.task != TASK_HASH && arg_set(a, hash_only[i])) return err_set("concord %s: --%s applies to --task hash", cmd, hash_only[i]);
    if (c->to.task == TASK_HASH && arg_flag(a, "new-head"))
        return err_set("concord finetune: --new-head does not apply to --task hash: the code layer is always new (--bits K)");
    static const char *const sgd_only[] = {"momentum", "nesterov"}, *const step_only[] = {"step-size", "gamma"};
    for (size_t i = 0; i < ARRAY_LEN(sgd_only); i++)
        if (c->to.optimizer != OPT_SGD && arg_set(a, sgd_only[i])) return err_set("concord %s: --%s applies to --optimizer sgd", cmd, sgd_only[i]);
    for (size_t i = 0; i < ARRAY_LEN(step_only); i++)
        if (c->to.schedule != SCHED_STEP && arg_set(a, step_only[i])) return err_set("concord %s: --%s applies to --schedule step", cmd, step_only[i]);
    if (arg_flag(a, "resume") && !arg_str(a, "out")) return err_set("concord %s: --resume needs --out CKPT (the checkpoint it continues)", cmd);
    if (arg_flag(a, "no-db") && (arg_set(a, "db") || arg_set(a, "job-key")))
        return err_set("concord %s: --%s has no effect with --no-db (nothing is recorded); drop one", cmd, arg_set(a, "db") ? "db" : "job-key");
    if (finetune) {
        static const char *const from_parent[] = {"model", "hidden", "width", "dropout", "init-seed"};
        for (size_t i = 0; i < ARRAY_LEN(from_parent); i++)
            if (arg_set(a, from_parent[i]))
                return err_set("concord finetune: --%s does not apply: the model (architecture, widths, weights) is the --from "
                               "checkpoint's%s", from_parent[i], str_eq(from_parent[i], "init-seed") ? " (a new head is drawn with a fixed seed)" : "");
        if (arg_str(a, "out") && same_file(arg_str(a, "out"), arg_str(a, "from")))
            return err_set("concord finetune: --out %s is the --from checkpoint itself; write the fine-tuned model to another file", arg_str(a, "out"));
        return 0;
    }
    const char *model = arg_str(a, "model");
    const ArchInfo *arch = model_arch_find(model);
    if (!arch) {
        char all[256] = "";
        for (int i = 0; i < N_ARCHS; i++) { strcat(all, ARCHS[i].name); strcat(all, i + 1 < N_ARCHS ? ", " : ""); }
        return err_set("unknown model '%s'; available: %s (see concord models)", model, all);
    }
    if (arg_double(a, "width", 1e-3, 64, &c->width) < 0 || arg_double(a, "dropout", 0, 0.99, &c->dropout) < 0) return -1;
    for (int i = 0; i < a->nspec; i++) { /* a model option the architecture does not read */
        const char *opt = a->spec[i].name;
        if (!arg_set(a, opt) || model_arch_uses(arch, opt) != 0) continue;
        char users[128] = "";
        for (int k = 0; k < N_ARCHS; k++)
            if (model_arch_uses(&ARCHS[k], opt) == 1) snprintf(users + strlen(users), sizeof users - strlen(users), "%s%s", users[0] ? ", " : "", ARCHS[k].name);
        return err_set("concord train: --%s does not apply to --model %s (it applies to %s)", opt, model, users);
    }
    if (model_arch_uses(arch, "hidden") == 1) {
        int w[MODEL_MAX_HIDDEN];
        ModelSpec spec;
        if (strlen(arg_str(a, "hidden")) >= sizeof spec.hidden) return err_set("--hidden %s: too long (at most %zu characters)", arg_str(a, "hidden"), sizeof spec.hidden - 1);
        if (model_hidden_parse(arg_str(a, "hidden"), w, MODEL_MAX_HIDDEN) < 0) return -1;
    }
    return 0;
}

int cmd_train_check(int finetune, int argc, char **argv) {
    Args a;
    TrainCfg c;
    int pr = args_parse(&a, finetune ? "finetune" : "train", "", TRAIN_OPTS, argc, argv);
    if (pr) return pr > 0 ? err_set("concord %s: --help in a job's command line", finetune ? "finetune" : "train") : -1;
    return train_cfg(&a, finetune, &c);
}

/* Loads train/val/test. For the hash task the retrieval protocol applies (hash.h): queries per class
 * from train+test, the rest is the database (returned as *db), training sampled from it (--limit),
 * validation split off the training sample; *test holds the queries. */
static int load_data(const Args *a, const char *name, const char *classes, uint64_t seed, int task, Dataset *train, Dataset *val,
                     Dataset *test, Dataset *db) {
    Dataset full;
    memset(db, 0, sizeof *db);
    const char *dir = arg_str(a, "data-dir");
    long nval, lim, tlim;
    if (arg_int(a, "val", 0, 10000000, &nval) < 0 || arg_int(a, "limit", 0, 100000000, &lim) < 0 ||
        arg_int(a, "test-limit", 0, 100000000, &tlim) < 0)
        return -1;
    if (dataset_open_classes(name, dir, classes, SPLIT_TRAIN, &full) < 0) return -1;
    if (task == TASK_HASH) {
        Dataset te, sample;
        long per;
        if (arg_int(a, "queries-per-class", 1, 100000, &per) < 0 || dataset_open_classes(name, dir, classes, SPLIT_TEST, &te) < 0) {
            dataset_close(&full);
            return -1;
        }
        char full_name[64];
        snprintf(full_name, sizeof full_name, "%s", full.name);
        int rc = hash_splits(&full, &te, (int)per, lim > 0 ? (int)(lim + nval) : 0, seed, test, db, &sample);
        dataset_close(&full);
        dataset_close(&te);
        if (rc < 0) return -1;
        if (nval >= sample.n) nval = sample.n / 10;
        dataset_split(&sample, (int)nval, seed, train, val);
        dataset_close(&sample);
        snprintf(train->name, sizeof train->name, "%s", full_name);
        return 0;
    }
    if (nval >= full.n) {
        int n = full.n;
        dataset_close(&full);
        return err_set("--val %ld: the training set of %s has only %d examples", nval, name, n);
    }
    dataset_split(&full, (int)nval, seed, train, val);
    dataset_close(&full);
    if (lim > 0 && lim < train->n) train->n = (int)lim;
    if (dataset_open_classes(name, dir, classes, SPLIT_TEST, test) < 0) { dataset_close(train); dataset_close(val); return -1; }
    if (tlim > 0 && tlim < test->n) test->n = (int)tlim;
    return 0;
}

typedef struct Session {
    const Args *a;
    const char *out;
    CkptMeta meta;
    Recorder rec;
} Session;

static int save_ckpt(Session *s, Model *m, int epoch) {
    if (!s->out) return 0;
    meta_set(&s->meta, "epoch", "%d", epoch);
    return ckpt_save(s->out, m, &s->meta);
}

static int on_epoch(void *ctx, Model *m, const EpochStats *st) {
    Session *s = ctx;
    /* the epoch's row first, then the checkpoint: killed between the two, the resumed run redoes this epoch
     * from the previous checkpoint and replaces the row with the same values (INSERT OR REPLACE; resume is
     * bitwise); the other order loses the row of an epoch the checkpoint already holds */
    if (record_epoch(&s->rec, st) < 0) return -1;
    fault_point("epoch-row");
    if (save_ckpt(s, m, st->epoch) < 0) return -1;
    fault_point("epoch");
    return 0;
}

/* the batch progress of a training run: one bar over every epoch still to train */
typedef struct TrainBar { Progress p; const char *cmd; int start, epochs; } TrainBar;
static void on_batch(void *ctx, int epoch, long done, long nbatches) {
    TrainBar *b = ctx;
    char label[64];
    snprintf(label, sizeof label, "%s epoch %d/%d", b->cmd, epoch + 1, b->epochs);
    progress_draw(&b->p, label, (long)(epoch - b->start) * nbatches + done, (long)(b->epochs - b->start) * nbatches, "batches");
    if (done == nbatches) progress_clear(&b->p); /* the epoch's own line comes next */
}

/* --help: only the options of this command (train has no --from, finetune no architecture options) */
static int train_help(int finetune, const char *usage) {
    static const char *const ft_only[] = {"from", "new-head", "freeze"};
    static const char *const train_only[] = {"model", "hidden", "width", "dropout", "init-seed"};
    OptSpec keep[ARRAY_LEN(TRAIN_OPTS)];
    int n = 0;
    for (const OptSpec *o = TRAIN_OPTS; o->name; o++) {
        int drop = 0;
        for (size_t i = 0; i < ARRAY_LEN(ft_only) && !finetune; i++) drop |= str_eq(o->name, ft_only[i]);
        for (size_t i = 0; i < ARRAY_LEN(train_only) && finetune; i++) drop |= str_eq(o->name, train_only[i]);
        if (!drop) keep[n++] = *o;
    }
    keep[n] = (OptSpec){0};
    args_usage(finetune ? "finetune" : "train", usage, keep);
    return 0;
}

static int run(int argc, char **argv, int finetune) {
    const char *cmd = finetune ? "finetune" : "train";
    const char *usage = finetune ? "--from CKPT --rule R [--new-head] [--freeze N] [options]" : "--model M --dataset D --rule R [options]";
    for (int i = 0; i < argc; i++)
        if (str_eq(argv[i], "--help") || str_eq(argv[i], "-h")) return train_help(finetune, usage);
    Args a;
    int pr = args_parse(&a, cmd, usage, TRAIN_OPTS, argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    TrainCfg cfg;
    if (train_cfg(&a, finetune, &cfg) < 0) return err_die();
    TrainOpts to = cfg.to;
    RuleOpts ro = cfg.ro;
    const Rule *rule = cfg.rule;
    uint64_t init_seed = cfg.init_seed;
    long threads = cfg.threads, freeze = cfg.freeze, bits = cfg.bits, topk = cfg.topk;
    if (threads > 0) openblas_set_num_threads((int)threads);

    Session s = {.a = &a, .out = arg_str(&a, "out")};
    if (s.out && out_writable(s.out) < 0) return err_die();
    const char *task = arg_str(&a, "task");
    /* the data: --dataset and --classes; a fine-tune takes both from its parent unless --dataset is given
       (then --classes alone, or the whole dataset) */
    const char *dname = arg_str(&a, "dataset"), *classes = arg_str(&a, "classes");
    CkptMeta parent_meta;
    if (finetune && !arg_set(&a, "dataset")) {
        if (ckpt_read_meta(arg_str(&a, "from"), &parent_meta) < 0) return err_die();
        if (meta_get(&parent_meta, "dataset")) dname = meta_get(&parent_meta, "dataset");
        if (!classes) classes = meta_get(&parent_meta, "class_subset");
    }
    char canon[256] = "";
    if (classes) {
        int sel[4096], nsel;
        if (dataset_classes_parse(classes, 0, sel, &nsel, canon, sizeof canon) < 0) return err_die();
    }
    Dataset train, val, test, db;
    if (load_data(&a, dname, classes, to.seed, to.task, &train, &val, &test, &db) < 0) return err_die();
    Model *m = NULL;
    int start_epoch = 0, rc = 1;
    char parent_hash[17] = "";
    CkptMeta pmeta;
    if (arg_flag(&a, "resume") && s.out && access(s.out, F_OK) == 0) {
        m = ckpt_load(s.out, NULL, NULL, 0, 1, &s.meta);
        if (!m) goto done;
        const char *ep = meta_get(&s.meta, "epoch");
        start_epoch = ep ? atoi(ep) : 0;
        if (!str_eq(meta_get(&s.meta, "rule"), rule->name)) {
            err_set("%s: --resume: the checkpoint was trained with rule %s, not %s", s.out, meta_get(&s.meta, "rule"), rule->name);
            goto done;
        }
        if (!to.quiet) printf("resuming %s at epoch %d of %d\n", s.out, start_epoch, to.epochs);
    } else if (finetune) {
        const char *from = arg_str(&a, "from");
        if (file_sha_hex(from, parent_hash) < 0) goto done;
        int hash = to.task == TASK_HASH;
        m = ckpt_load_head(from, rule, &ro, hash ? (int)bits : arg_flag(&a, "new-head") ? train.classes : 0,
                           hash ? "hash" : NULL, 0, &pmeta);
        if (!m) goto done;
        if (m->spec.in_c != train.c || m->spec.in_h != train.h || m->spec.in_w != train.w) {
            err_set("%s: model input is %dx%dx%d but %s is %dx%dx%d", from, m->spec.in_c, m->spec.in_h, m->spec.in_w,
                    train.name, train.c, train.h, train.w);
            goto done;
        }
        if (!hash && m->spec.classes != train.classes) {
            err_set("%s: model has %d classes, %s has %d; pass --new-head", from, m->spec.classes, train.name, train.classes);
            goto done;
        }
        if (freeze >= model_nparam_layers(m)) {
            err_set("--freeze %ld: %s has %d linear/conv layers; freeze at most %d so that one still trains", freeze, from,
                    model_nparam_layers(m), model_nparam_layers(m) - 1);
            goto done;
        }
        model_set_frozen(m, (int)freeze);
        m->step = 0;
        meta_set(&s.meta, "parent", "%s", from);
        meta_set(&s.meta, "parent_hash", "%s", parent_hash);
        meta_set(&s.meta, "parent_rule", "%s", meta_get(&pmeta, "rule") ? meta_get(&pmeta, "rule") : "");
    } else {
        ModelSpec spec;
        model_spec_default(&spec, arg_str(&a, "model"), train.c, train.h, train.w, train.classes);
        spec.width = (float)cfg.width;
        spec.dropout = (float)cfg.dropout;
        snprintf(spec.hidden, sizeof spec.hidden, "%s", arg_str(&a, "hidden"));
        if (to.task == TASK_HASH) {
            snprintf(spec.head, sizeof spec.head, "hash");
            spec.classes = (int)bits;
        }
        m = model_create(&spec, rule, &ro, init_seed);
        if (!m) goto done;
        /* the normalisation layer: per-channel statistics of the training split */
        dataset_channel_stats(&train, m->L[0].mean, m->L[0].std);
        for (int c = 0; c < train.c; c++)
            if (!(m->L[0].std[c] > 1e-6f)) m->L[0].std[c] = 1.0f;
    }
    if (!arg_flag(&a, "resume") || start_epoch == 0) {
        meta_set(&s.meta, "kind", "%s", cmd);
        meta_set(&s.meta, "dataset", "%s", dname);          /* what dataset_open reads ... */
        if (canon[0]) meta_set(&s.meta, "class_subset", "%s", canon); /* ... and the subset of its classes */
        meta_set(&s.meta, "data_seed", "%llu", (unsigned long long)to.seed);
        meta_set(&s.meta, "init_seed", "%llu", (unsigned long long)init_seed);
        meta_set(&s.meta, "epochs", "%d", to.epochs);
        meta_set(&s.meta, "freeze", "%ld", freeze);
        meta_set(&s.meta, "task", "%s", task);
    }
    int rb = record_begin(&s.rec, &a, cmd, m, &train, &to, &s.meta);
    if (rb < 0) goto done;
    if (rb > 0) {
        printf("job %s already finished in %s; nothing to do\n", arg_str(&a, "job-key"), s.rec.path);
        rc = 0;
        goto done;
    }
    install_interrupt_handlers();
    if (!to.quiet)
        printf("%s %s with %s on %s: %ld parameters, %d train / %d val / %d test examples, %d epochs\n", cmd, m->spec.arch,
               rule->name, train.name, m->n_params, train.n, val.n, test.n, to.epochs);
    TrainBar bar = {.cmd = cmd, .start = start_epoch, .epochs = to.epochs};
    progress_init(&bar.p, progress_enabled(to.quiet));
    if (bar.p.on) {
        to.on_batch = on_batch;
        to.batch_ctx = &bar;
    }
    fflush(stdout);
    if (train_run(m, &train, val.n ? &val : NULL, &to, start_epoch, on_epoch, &s) < 0) {
        record_end(&s.rec, g_interrupted ? "interrupted" : "failed", err_msg(), NULL, NAN);
        goto done;
    }
    double test_loss = NAN, test_acc, prec = NAN;
    if (to.task == TASK_HASH) {
        test_acc = evaluate_map(m, &test, &db, (int)topk, 100, &prec);
        meta_set(&s.meta, "map", "%.6f", test_acc);
        meta_set(&s.meta, "precision_at_100", "%.6f", prec);
        meta_set(&s.meta, "topk", "%ld", topk);
        meta_set(&s.meta, "bits", "%ld", bits);
        meta_set(&s.meta, "queries_per_class", "%s", arg_str(&a, "queries-per-class")); /* concord attack rebuilds the split */
    } else {
        test_acc = evaluate(m, &test, 256, &test_loss);
        if (!isfinite(test_loss)) { /* never a finished run: its numbers are not numbers */
            err_set("training diverged: the test loss is %s (the outputs overflow in inference mode); lower --lr",
                    isnan(test_loss) ? "NaN" : "Inf");
            record_end(&s.rec, "failed", err_msg(), NULL, NAN);
            goto done;
        }
        meta_set(&s.meta, "test_loss", "%.6f", test_loss);
    }
    meta_set(&s.meta, "test_acc", "%.6f", test_acc);
    if (save_ckpt(&s, m, to.epochs) < 0) { record_end(&s.rec, "failed", err_msg(), NULL, NAN); goto done; }
    if (to.task == TASK_HASH)
        printf("%s done: mAP%s %.4f, precision@100 %.4f, %d queries against %d database codes (%ld bits)%s%s\n", cmd,
               topk ? "@topk" : "", test_acc, prec, test.n, db.n, bits, s.out ? "; checkpoint " : "", s.out ? s.out : "");
    else
        printf("%s done: test accuracy %.2f%% (error %.2f%%) on %d examples%s%s\n", cmd, 100 * test_acc, 100 * (1 - test_acc),
               test.n, s.out ? "; checkpoint " : "", s.out ? s.out : "");
    if (record_end(&s.rec, "finished", NULL, s.out, test_acc) < 0) goto done;
    rc = 0;
done:
    if (rc) err_die();
    record_close(&s.rec);
    model_free(m);
    dataset_close(&train);
    dataset_close(&val);
    dataset_close(&test);
    dataset_close(&db);
    return rc;
}

int cmd_train(int argc, char **argv) { return run(argc, argv, 0); }
int cmd_finetune(int argc, char **argv) { return run(argc, argv, 1); }

/* "CxHxW", each part a positive decimal (C <= 4096, H, W <= 65536, the checkpoint limits); 0 or -1. */
static int parse_shape(const char *text, long dim[3]) {
    char buf[64];
    if (strlen(text) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", text);
    char *p = buf;
    for (int d = 0; d < 3; d++) {
        char *x = strchr(p, 'x');
        if ((d < 2) != (x != NULL)) return -1;
        if (x) *x = 0;
        if (parse_int(p, 1, d ? 65536 : 4096, &dim[d]) < 0) return -1;
        p = x ? x + 1 : p;
    }
    return 0;
}

int cmd_models(int argc, char **argv) {
    static const OptSpec opts[] = {{"shape", "CxHxW", "input shape", NULL}, {"classes", "K", "classes", "10"}, {0}};
    Args a;
    int pr = args_parse(&a, "models", "[--shape CxHxW] [--classes K]", opts, argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    long k, dim[3] = {0, 0, 0};
    if (arg_int(&a, "classes", 1, 100000, &k) < 0) return err_die();
    if (arg_set(&a, "shape") && parse_shape(arg_str(&a, "shape"), dim) < 0) {
        err_set("--shape %s: expected CxHxW with C in 1..4096 and H, W in 1..65536, e.g. 3x32x32", arg_str(&a, "shape"));
        return err_die();
    }
    int nbad = 0;
    printf("%-9s %-9s %12s %16s  %s\n", "model", "input", "parameters", "fwd FLOPs/sample", "description");
    for (int i = 0; i < N_ARCHS; i++) {
        int c = 1, h = 28, w = 28;
        if (arg_set(&a, "shape")) {
            c = (int)dim[0]; h = (int)dim[1]; w = (int)dim[2];
        } else if (i >= 2) {
            c = 3; h = w = 32;
        }
        ModelSpec s;
        model_spec_default(&s, ARCHS[i].name, c, h, w, (int)k);
        Model *m = model_create(&s, NULL, NULL, 0);
        if (!m) { printf("%-9s %dx%dx%d: %s\n", ARCHS[i].name, c, h, w, err_msg()); err_clear(); nbad++; continue; }
        char in[32];
        snprintf(in, sizeof in, "%dx%dx%d", c, h, w);
        printf("%-9s %-9s %12ld %16ld  %s\n", ARCHS[i].name, in, m->n_params, model_flops(m), ARCHS[i].desc);
        model_free(m);
    }
    if (nbad) {
        err_set("concord models: %d of %d architectures cannot be built for --shape %s (see above)", nbad, N_ARCHS, arg_str(&a, "shape"));
        return err_die();
    }
    return 0;
}

int cmd_rules(int argc, char **argv) {
    static const OptSpec opts[] = {{0}};
    Args a;
    int pr = args_parse(&a, "rules", "\n\nLists the learning rules: each one's feedback path and state. It takes no options; the\n"
                        "rules' own options (--usf-scale, --magnitude, --brsf-resample, --last-layer-bp, --rule-seed) belong to\n"
                        "concord train and concord finetune.", opts, argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    printf("%-6s %-84s %s\n", "rule", "feedback", "state");
    for (int i = 0; i < N_RULES; i++) printf("%-6s %-84s %s\n", RULES[i]->name, RULES[i]->desc, RULES[i]->state);
    printf("\noptions: --usf-scale xavier|he-fanout|none|wstd|meanabs  --magnitude uniform|halfnormal\n"
           "         --brsf-resample batch|forward  --last-layer-bp  --rule-seed S\n");
    return 0;
}
