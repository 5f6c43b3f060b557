/* cmd_attack.c -- `concord attack`: evaluate a checkpoint under FGSM / PGD / Square / APGD / FAB-T /
 * AutoAttack (docs/attacks.md), sweeping
 * comma lists of attacks, eps values and gradient sources in one invocation so the masking flags
 * (attacks/flags.h) can compare them; one line per (attack, eps, source); every evaluation recorded in
 * the results database; optional adversarial-example grids.
 * Hashing checkpoints (--task hash, or meta task=hash) take hash-untargeted / hash-targeted (PGD-Linf, 100
 * steps by default) on the queries of the retrieval split the model was trained with (hash_splits with
 * the checkpoint's data seed and queries per class), scored as mAP against the clean database codes. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "attacks/flags.h"
#include "harness/cli/version.h"
#include "results/db.h"
#include "results/outcomes.h"
#include "results/stats.h"
#include "rules/build.h"
#include "harness/checkpoint.h"
#include "harness/hash.h"
#include "harness/train.h"
#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/cli/progress.h"

static const OptSpec OPTS[] = {
    {"ckpt", "CKPT", "checkpoint to attack (required)", NULL},
    {"attack", "A[,A]", "fgsm | pgd | square | apgd-ce | apgd-dlr | apgd-t | fab-t | autoattack, each L2 variant "
     "with -l2 (pgd-l2, apgd-ce-l2...); hashing: hash-untargeted | hash-targeted (comma list)",
     "pgd (hashing: hash-untargeted)"},
    {"eps", "E[,E]", "perturbation budgets in [0,1] pixel units: 8/255, 0.03 (comma list)", "8/255"},
    {"steps", "N", "iterations: pgd 10; apgd-*, fab-t, autoattack 100; hashing 100", NULL},
    {"task", "classify|hash", "what the checkpoint does (default: its meta task, else classify)", NULL},
    {"queries-per-class", "N", "hash: queries per class of the retrieval split (default: the checkpoint's, else 100)", NULL},
    {"topk", "N", "hash: mAP@topk, 0 = the whole database (default: the checkpoint's, else 0)", NULL},
    {"alpha", "X", "pgd: step size, absolute (2/255) or relative to eps (r0.25); default 2.5*eps/steps", NULL},
    {"restarts", "N", "pgd, apgd-*, fab-t, autoattack: restarts (an example broken once is done)", "1"},
    {"targets", "N", "apgd-t, fab-t, autoattack: target classes per example, the top ones by clean logit (at most K-1)", "9"},
    {"version", "standard|rand", "autoattack: standard (APGD-CE, APGD-T, FAB-T, Square) or rand (APGD-CE, APGD-DLR with "
     "--eot 20, for brSF's random feedback)", "standard"},
    {"random-start", NULL, "pgd: start at a random point of the ball (default)", NULL},
    {"no-random-start", NULL, "pgd: start at the clean input", NULL},
    {"targeted", NULL, "targeted attack (class --target, default (y+1) mod K)", NULL},
    {"target", "K", "targeted: the target class (-1 = (y+1) mod K)", "-1"},
    {"grad", "S[,S]", "gradient source: true | feedback | transfer:CKPT (comma list)", "true"},
    {"eot", "N", "feedback source: rule draws averaged per step (brSF); default 1, autoattack --version rand 20", NULL},
    {"queries", "N", "square: query budget per example; default 1000, autoattack 5000", NULL},
    {"p-init", "X", "square, autoattack: initial fraction of pixels per square (AutoAttack's 0.8)", "0.8"},
    {"seed", "S", "attack seed (random starts, Square)", "0"},
    {"batch", "N", "examples per batch", "256"},
    {"dataset", "D", "test data (default: the checkpoint's dataset)", NULL},
    {"classes", "LIST", "only these classes, relabelled 0..k-1 (default: the checkpoint's subset when --dataset is not given)", NULL},
    {"data-dir", "DIR", "where the dataset files are", NULL},
    {"limit", "N", "attack only the first N test examples (0 = all)", "0"},
    {"grid", "FILE.png", "adversarial-example grid (FILE-<row>.png per row when several)", NULL},
    {"threads", "N", "OpenBLAS threads (0 = OpenBLAS default)", "0"},
    {"db", "PATH", "results database (default out/concord.db or $CONCORD_DB)", NULL},
    {"no-db", NULL, "do not record in the results database", NULL},
    {"job-key", "KEY", "suite job key (rows get KEY/<attack>/<eps>/<source> when several)", NULL},
    {"transfer-label", "L[,L]", "names of the transfer sources, in --grad order, for row keys (transfer:<L>); "
     "default: the surrogate's content hash, so keys never depend on where the file is; a labelled source may be the "
     "attacked checkpoint itself (a transfer matrix's diagonal), an unlabelled one may not", NULL},
    {"quiet", NULL, "no header, no progress bar and no line per evaluation while it runs: every row once at the end, "
     "then the masking flags and where they were recorded", NULL},
    {0},
};

#define MAX_LIST 32
#define MAX_ROWS 512

/* Splits a comma list into at most MAX_LIST items (copied into buf); empty and repeated items are errors. */
static int split_list(const char *opt, const char *text, char *buf, size_t cap, char **items) {
    return arg_list_text("attack", opt, text, buf, cap, items, MAX_LIST);
}


/* the attack's name as printed: autoattack rows carry their version, component rows their place */
static void row_label(const AttackParams *p, char *out, size_t n) {
    if (p->stage > 0) snprintf(out, n, "  %d.%s", p->stage, attack_name(p));
    else if (p->kind == ATK_AUTOATTACK) snprintf(out, n, "%s(%s)", attack_name(p), attack_version_name(p->version));
    else snprintf(out, n, "%s", attack_name(p));
}

static void print_row(int idx, const AttackResult *r, const char *flags) {
    const EvalCounts *c = &r->c;
    char src[600], name[64];
    row_label(&r->p, name, sizeof name);
    if (r->p.kind == ATK_SQUARE && r->p.stage == 0) snprintf(src, sizeof src, "none (%d queries)", r->p.queries);
    else if (r->p.kind == ATK_SQUARE) snprintf(src, sizeof src, "none (%d q; run: %s)", r->p.queries, attack_grad_name(r->p.grad_source));
    else if (r->p.grad_source == GRAD_TRANSFER) snprintf(src, sizeof src, "transfer:%s", r->p.transfer_ckpt);
    else if (r->p.grad_source == GRAD_FEEDBACK && r->p.eot > 1) snprintf(src, sizeof src, "feedback (eot %d)", r->p.eot);
    else snprintf(src, sizeof src, "%s", attack_grad_name(r->p.grad_source));
    double n = c->n ? (double)c->n : 1;
    char tg[32] = "";
    if (r->p.targets > 0) snprintf(tg, sizeof tg, ", %d targets", r->p.targets);
    printf("%3d %-6s eps %-8s grad %-18s clean %6.2f%%  robust %6.2f%%  success %6.2f%%  flipped %ld  zero-grad %ld"
           "  linf %.4f  l2 %.3f  (n %ld%s, %.1f s)  flags: %s\n",
           idx, name, r->p.eps_text, src, 100 * c->n_clean_ok / n, 100 * c->n_robust_ok / n,
           c->n_clean_ok ? 100.0 * (c->n_clean_ok - c->n_robust_ok) / c->n_clean_ok : 0.0, c->n_flipped, c->n_zero_grad,
           c->mean_linf, c->mean_l2, c->n, tg, c->seconds, *flags ? flags : "-");
    fflush(stdout);
}

static void grid_path(const char *base, int idx, int many, char *out, size_t n) {
    if (!many) { snprintf(out, n, "%s", base); return; }
    const char *dot = strrchr(base, '.'), *slash = strrchr(base, '/');
    if (!dot || (slash && dot < slash)) dot = base + strlen(base);
    snprintf(out, n, "%.*s-%d%s", (int)(dot - base), base, idx, dot);
}

typedef struct Opts {
    AttackParams base;
    int steps_set, queries_set, eot_set; /* given on the command line (else each attack's default) */
    const AttackInfo *atk[MAX_LIST];
    int natk, neps, ngrad;
    char *eps[MAX_LIST], *grad[MAX_LIST];
    char eps_buf[1024], grad_buf[8192], atk_buf[256], label_buf[1024];
    char *label[MAX_LIST];  /* per --grad item: the transfer source's label (NULL for true / feedback) */
    char hash_label[MAX_LIST][17];
    const char *alpha;
    long limit, threads, topk, per; /* topk, per: -1 = not given (the checkpoint's) */
} Opts;

/* A row's name and, under --job-key, its key suffix: <attack>/<eps>/<source>. A transfer source is named
 * by its label (--transfer-label, else the surrogate's content hash), not its path: the same evaluation
 * keeps its key when the files move (a suite written to another --out). */
static void row_name(const Opts *o, const AttackResult *r, char *out, size_t n) {
    const char *label = "?";
    for (int g = 0; g < o->ngrad; g++) {
        AttackParams t;
        attack_params_default(&t);
        if (o->label[g] && attack_set_grad(&t, o->grad[g]) == 0 && str_eq(t.transfer_ckpt, r->p.transfer_ckpt)) {
            label = o->label[g];
            break;
        }
    }
    /* a standalone Square has no gradient source; AutoAttack's Square row keeps its run's, so the rows of a
       true and a feedback run differ */
    const int gradless = r->p.kind == ATK_SQUARE && r->p.stage == 0;
    char nm[96];
    if (r->p.stage > 0) /* a component of an AutoAttack run: autoattack.apgd-t, autoattack-rand.apgd-dlr... */
        snprintf(nm, sizeof nm, "%s%s.%s", r->p.version == AA_RAND ? "autoattack-rand" : "autoattack",
                 r->p.norm == NORM_L2 ? "-l2" : "", attack_name(&r->p));
    else if (r->p.kind == ATK_AUTOATTACK)
        snprintf(nm, sizeof nm, "%s%s", attack_name(&r->p), r->p.version == AA_RAND ? "-rand" : "");
    else
        snprintf(nm, sizeof nm, "%s", attack_name(&r->p));
    snprintf(out, n, "%s/%s/%s%s%s", nm, r->p.eps_text,
             gradless ? "none" : attack_grad_name(r->p.grad_source), r->p.grad_source == GRAD_TRANSFER && !gradless ? ":" : "",
             r->p.grad_source == GRAD_TRANSFER && !gradless ? label : "");
}

/* hash: the checkpoint is a hashing model (only OBJ_HASH attacks apply), else a classifier. */
static int parse_opts(const Args *a, Opts *o, int hash) {
    AttackParams *p = &o->base;
    attack_params_default(p);
    char *items[MAX_LIST];
    const char *atext = arg_set(a, "attack") ? arg_str(a, "attack") : hash ? "hash-untargeted" : "pgd";
    int n = split_list("attack", atext, o->atk_buf, sizeof o->atk_buf, items);
    if (n < 0) return -1;
    unsigned uses = 0;
    for (int i = 0; i < n; i++) {
        o->atk[i] = attack_find(items[i]);
        if (!o->atk[i]) {
            char all[256] = "";
            for (int k = 0; k < N_ATTACKS; k++) { strcat(all, ATTACKS[k].name); strcat(all, k + 1 < N_ATTACKS ? ", " : ""); }
            return err_set("unknown attack '%s'; available: %s", items[i], all);
        }
        if ((o->atk[i]->objective == OBJ_HASH) != hash)
            return err_set(hash ? "--attack %s: the checkpoint is a hashing model; use hash-untargeted or hash-targeted"
                                : "--attack %s applies to hashing models (--task hash); this checkpoint is a classifier",
                           items[i]);
        uses |= o->atk[i]->uses;
    }
    o->natk = n;
    if ((o->neps = split_list("eps", arg_str(a, "eps"), o->eps_buf, sizeof o->eps_buf, o->eps)) < 0) return -1;
    double ev[MAX_LIST];
    for (int i = 0; i < o->neps; i++) {
        AttackParams t = *p;
        if (attack_set_eps(&t, o->eps[i]) < 0) return -1;
        ev[i] = t.eps;
        for (int k = 0; k < i; k++) /* 0.1 and 1/10: the same evaluation twice under two keys */
            if (ev[k] == ev[i]) return err_set("--eps %s: %s and %s are the same budget; keep one", arg_str(a, "eps"), o->eps[k], o->eps[i]);
    }
    if ((o->ngrad = split_list("grad", arg_str(a, "grad"), o->grad_buf, sizeof o->grad_buf, o->grad)) < 0) return -1;
    int ntransfer = 0, nfeedback = 0;
    for (int i = 0; i < o->ngrad; i++) {
        AttackParams t = *p;
        if (attack_set_grad(&t, o->grad[i]) < 0) return -1;
        ntransfer += t.grad_source == GRAD_TRANSFER;
        nfeedback += t.grad_source == GRAD_FEEDBACK;
    }
    if (arg_set(a, "eot") && !nfeedback) return err_set("--eot applies to --grad feedback (it averages the rule's feedback draws)");
    if (arg_set(a, "transfer-label")) {
        char *labels[MAX_LIST];
        int nl = split_list("transfer-label", arg_str(a, "transfer-label"), o->label_buf, sizeof o->label_buf, labels);
        if (nl < 0) return -1;
        if (nl != ntransfer)
            return err_set("--transfer-label: %d label%s for %d transfer source%s in --grad; give one per transfer:CKPT, in order",
                           nl, nl == 1 ? "" : "s", ntransfer, ntransfer == 1 ? "" : "s");
        for (int i = 0, l = 0; i < o->ngrad; i++) {
            AttackParams t = *p;
            attack_set_grad(&t, o->grad[i]);
            if (t.grad_source != GRAD_TRANSFER) continue;
            if (strpbrk(labels[l], "/ \t")) return err_set("--transfer-label %s: a label is one word without slashes", labels[l]);
            o->label[i] = labels[l++];
        }
    }
    /* an option no selected attack uses would be silently ignored: refuse it */
    static const struct { const char *opt; unsigned bit; } USE[] = {
        {"steps", AU_STEPS}, {"alpha", AU_ALPHA}, {"restarts", AU_RESTARTS}, {"random-start", AU_RANDOM_START},
        {"no-random-start", AU_RANDOM_START}, {"grad", AU_GRAD}, {"eot", AU_GRAD}, {"queries", AU_QUERIES},
        {"p-init", AU_QUERIES}, {"targeted", AU_TARGET}, {"target", AU_TARGET}, {"targets", AU_TARGETS},
        {"version", AU_VERSION},
    };
    for (size_t i = 0; i < ARRAY_LEN(USE); i++)
        if (arg_set(a, USE[i].opt) && !(uses & USE[i].bit))
            return err_set("--%s does not apply to --attack %s", USE[i].opt, atext);
    if (arg_flag(a, "random-start") && arg_flag(a, "no-random-start"))
        return err_set("--random-start and --no-random-start contradict each other");
    long v = 0;
    o->steps_set = arg_set(a, "steps");
    if (o->steps_set && arg_int(a, "steps", 0, 100000, &v) < 0) return -1;
    p->steps = (int)v;
    o->queries_set = arg_set(a, "queries");
    o->eot_set = arg_set(a, "eot");
    if (arg_int(a, "targets", 1, 255, &v) < 0) return -1;
    p->targets = (int)v;
    const char *ver = arg_str(a, "version");
    if (str_eq(ver, "standard")) p->version = AA_STANDARD;
    else if (str_eq(ver, "rand")) p->version = AA_RAND;
    else return err_set("--version %s: use standard or rand", ver);
    if (arg_int(a, "restarts", 1, 1024, &v) < 0) return -1;
    p->restarts = (int)v;
    p->random_start = !arg_flag(a, "no-random-start");
    p->targeted = arg_flag(a, "targeted");
    if (arg_int(a, "target", -1, 100000, &v) < 0) return -1;
    p->target = (int)v;
    if (arg_set(a, "target") && !p->targeted) return err_set("--target needs --targeted");
    v = 1;
    if (o->eot_set && arg_int(a, "eot", 1, 10000, &v) < 0) return -1;
    p->eot = (int)v;
    v = 0;
    if (o->queries_set && arg_int(a, "queries", 1, 100000000, &v) < 0) return -1;
    p->queries = (int)v;
    if (arg_double(a, "p-init", 1e-6, 1, &p->p_init) < 0) return -1;
    if (arg_u64(a, "seed", &p->seed) < 0) return -1;
    if (arg_int(a, "batch", 1, 65536, &v) < 0) return -1;
    p->batch = (int)v;
    o->alpha = arg_str(a, "alpha");
    /* validate the step size text once (against eps 1, steps 1) so errors come before any work */
    AttackParams t = *p;
    t.eps = 1;
    if (attack_set_alpha(&t, o->alpha) < 0) return -1;
    if (!hash && (arg_set(a, "queries-per-class") || arg_set(a, "topk")))
        return err_set("--queries-per-class and --topk apply to hashing checkpoints (--task hash)");
    if (hash && arg_set(a, "grid")) return err_set("--grid applies to classifiers; hashing attacks write no grid");
    if (arg_flag(a, "no-db") && (arg_set(a, "db") || arg_set(a, "job-key")))
        return err_set("--%s has no effect with --no-db (nothing is recorded); drop one", arg_set(a, "db") ? "db" : "job-key");
    o->topk = o->per = -1;
    if (arg_int(a, "limit", 0, 100000000, &o->limit) < 0 || arg_int(a, "threads", 0, 256, &o->threads) < 0 ||
        (arg_set(a, "topk") && arg_int(a, "topk", 0, 100000000, &o->topk) < 0) ||
        (arg_set(a, "queries-per-class") && arg_int(a, "queries-per-class", 1, 100000, &o->per) < 0))
        return -1;
    return 0;
}

int cmd_attack_check(int argc, char **argv) {
    Args a;
    int pr = args_parse(&a, "attack", "", OPTS, argc, argv);
    if (pr) return pr > 0 ? err_set("concord attack: --help in a job's command line") : -1;
    if (!arg_str(&a, "ckpt")) return err_set("concord attack: --ckpt CKPT is required");
    const char *task = arg_str(&a, "task");
    if (task && !str_eq(task, "classify") && !str_eq(task, "hash")) return err_set("--task %s: use classify or hash", task);
    Opts *o = xcalloc(1, sizeof *o);
    int rc = parse_opts(&a, o, str_eq(task, "hash"));
    free(o);
    return rc;
}

static void print_hash_row(int idx, const AttackResult *r, const char *flags) {
    const EvalCounts *c = &r->c;
    const HashCounts *h = &r->h;
    char src[600];
    if (r->p.grad_source == GRAD_TRANSFER) snprintf(src, sizeof src, "transfer:%s", r->p.transfer_ckpt);
    else if (r->p.grad_source == GRAD_FEEDBACK && r->p.eot > 1) snprintf(src, sizeof src, "feedback (eot %d)", r->p.eot);
    else snprintf(src, sizeof src, "%s", attack_grad_name(r->p.grad_source));
    double n = c->n ? (double)c->n : 1;
    char tm[64] = "";
    if (r->p.targeted) snprintf(tm, sizeof tm, "  target-mAP %.4f -> %.4f", h->tmap_clean, h->tmap_adv);
    printf("%3d %-15s eps %-8s grad %-18s mAP %.4f -> %.4f  P@%d %.4f -> %.4f%s  success %6.2f%%  changed %ld  "
           "hamming %.2f/%d  zero-grad %ld  linf %.4f  (n %ld, db %ld, %.1f s)  flags: %s\n",
           idx, attack_name(&r->p), r->p.eps_text, src, h->map_clean, h->map_adv, HASH_PREC_N, h->prec_clean, h->prec_adv, tm,
           100.0 * (c->n - c->n_robust_ok) / n, c->n_flipped, h->mean_hamming, h->bits, c->n_zero_grad, c->mean_linf, c->n,
           h->n_db, c->seconds, *flags ? flags : "-");
    fflush(stdout);
}

/* The retrieval split a hashing checkpoint was trained on: queries and database of hash_splits (per: the
 * queries per class given on the command line, -1 = the checkpoint's; classes: its class subset or NULL). */
static int hash_data(const Args *a, const CkptMeta *meta, const char *dname, const char *classes, long per, Dataset *q,
                     Dataset *db) {
    const char *mp = meta_get(meta, "queries_per_class"), *ms = meta_get(meta, "data_seed");
    if (per < 0) per = mp ? atol(mp) : 100;
    uint64_t seed = ms ? strtoull(ms, NULL, 10) : 0;
    Dataset tr, te, training;
    if (dataset_open_classes(dname, arg_str(a, "data-dir"), classes, SPLIT_TRAIN, &tr) < 0) return -1;
    if (dataset_open_classes(dname, arg_str(a, "data-dir"), classes, SPLIT_TEST, &te) < 0) { dataset_close(&tr); return -1; }
    char name[64];
    snprintf(name, sizeof name, "%s", tr.name);
    int rc = hash_splits(&tr, &te, (int)per, 1, seed, q, db, &training);
    dataset_close(&tr);
    dataset_close(&te);
    if (rc == 0) dataset_close(&training);
    snprintf(q->name, sizeof q->name, "%s", name);
    return rc;
}

/* row r's per-example robust bits, from its outcomes BLOB (owned by r until the command ends) */
static void set_robust(AttackResult *r, const uint8_t *blob, long n) {
    uint8_t *v = xmalloc((size_t)(n ? n : 1));
    outcomes_robust(blob, n, v);
    r->robust = v;
}

/* The masking flags of row i; the feedback gap as a paired test on the rows' per-example outcomes. */
static unsigned flags_of(const AttackResult *res, int n, int i) { return attack_flags_paired(res, n, i, stats_mcnemar_exact); }

/* The parameters of one evaluation: attack ai at eps item e through gradient item g, on a model with K
 * classes (the options not given take that attack's defaults: attack.c's table). 0, or -1 with err_set. */
static int build_params(const Opts *o, const AttackInfo *ai, int e, int g, int K, AttackParams *p) {
    *p = o->base;
    attack_params_apply(p, ai);
    attack_set_eps(p, o->eps[e]);
    if (ai->uses & AU_GRAD) attack_set_grad(p, o->grad[g]);
    else p->grad_source = GRAD_TRUE;
    if (!o->steps_set) p->steps = ai->steps;
    if (!o->queries_set) p->queries = ai->queries;
    switch (p->kind) {
    case ATK_FGSM:
        p->steps = 1; p->restarts = 1; p->random_start = 0;
        snprintf(p->alpha_text, sizeof p->alpha_text, "%s", p->eps_text);
        p->alpha = p->eps;
        break;
    case ATK_PGD:
        if (attack_set_alpha(p, o->alpha) < 0) return -1;
        break;
    case ATK_APGD: /* the adaptive step starts at 2 eps */
        p->random_start = 1;
        snprintf(p->alpha_text, sizeof p->alpha_text, "r2");
        p->alpha = 2 * p->eps;
        break;
    default: /* square, fab-t (its first restart starts at x), autoattack: no step size */
        if (p->kind == ATK_SQUARE) { p->steps = 0; p->restarts = 1; }
        p->random_start = p->kind == ATK_AUTOATTACK;
        p->alpha_text[0] = 0;
        p->alpha = 0;
    }
    if (p->kind != ATK_SQUARE && p->kind != ATK_AUTOATTACK) { p->queries = 0; p->p_init = 0; }
    if (ai->uses & AU_TARGETS) { if (p->targets > K - 1) p->targets = K - 1 > 0 ? K - 1 : 1; }
    else p->targets = 0;
    if (!(ai->uses & AU_VERSION)) p->version = AA_STANDARD;
    if (p->grad_source != GRAD_FEEDBACK) p->eot = 1;
    else if (p->kind == ATK_AUTOATTACK && p->version == AA_RAND && !o->eot_set) p->eot = 20; /* AutoAttack's rand */
    return p->objective == OBJ_CE ? attack_check(p, K) : 0;
}

/* the progress of one evaluation pass (attacks/attack.h attack_progress_set): examples attacked so far */
typedef struct AtkBar { Progress p; long prev_done, prev_total; } AtkBar;
static void on_attack_progress(void *ctx, const AttackParams *p, long done, long total) {
    AtkBar *b = ctx;
    if (done <= b->prev_done || total != b->prev_total) progress_start(&b->p, 0); /* a new pass */
    b->prev_done = done;
    b->prev_total = total;
    char label[160], name[64];
    row_label(p, name, sizeof name);
    snprintf(label, sizeof label, "attack %s eps %s %s", name[0] == ' ' ? name + 2 : name, p->eps_text,
             p->kind == ATK_SQUARE && p->stage == 0 ? "black-box" : attack_grad_name(p->grad_source));
    progress_draw(&b->p, label, done, total, "examples");
    if (done == total) { progress_clear(&b->p); b->prev_done = 0; b->prev_total = 0; }
}

int cmd_attack(int argc, char **argv) {
    Args a;
    int pr = args_parse(&a, "attack", "--ckpt CKPT --attack fgsm|pgd|square|apgd-ce|apgd-dlr|apgd-t|fab-t|autoattack[-l2]|hash-untargeted|hash-targeted --eps 8/255[,E...] [--grad true|feedback|transfer:CKPT[,...]] [options]",
                        OPTS, argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    const char *ckpt = arg_str(&a, "ckpt");
    if (!ckpt) { err_set("concord attack: --ckpt CKPT is required"); return err_die(); }
    Opts *o = xcalloc(1, sizeof *o);
    AttackResult *res = xcalloc(MAX_ROWS, sizeof *res);
    long *broke = xcalloc(MAX_ROWS, sizeof *broke), *attacked = xcalloc(MAX_ROWS, sizeof *attacked);
    uint8_t *grid_row = xcalloc(MAX_ROWS, 1);
    uint8_t **blob = xcalloc(MAX_ROWS, sizeof *blob); /* each row's per-example outcomes (results/outcomes.h) */
    long *blob_n = xcalloc(MAX_ROWS, sizeof *blob_n);
    Model *m = NULL, *sur[MAX_LIST] = {0};
    Dataset d = {0}, hdb = {0};
    int have_data = 0, rc = 1, nres = 0, hash = 0;
    long limit, threads, topk = 0;
    uint64_t *db_codes = NULL;
    Db *db = NULL;
    CkptMeta meta;
    AttackKeep keep = {0};
    AtkBar bar = {0}; /* progress_init below; {0} draws nothing if we fail before it */
    const char *grid = arg_str(&a, "grid");
    char target_hash[17] = "";

    if (!(m = ckpt_load(ckpt, NULL, NULL, 0, 0, &meta))) goto done;
    const char *task = arg_set(&a, "task") ? arg_str(&a, "task") : meta_get(&meta, "task");
    if (!task || !*task) task = str_eq(m->spec.head, "hash") ? "hash" : "classify";
    if (!str_eq(task, "classify") && !str_eq(task, "hash")) { err_set("--task %s: use classify or hash", task); goto done; }
    hash = str_eq(task, "hash");
    if (hash != str_eq(m->spec.head, "hash")) {
        err_set("%s: --task %s but the model's head is '%s'", ckpt, task, m->spec.head);
        goto done;
    }
    if (parse_opts(&a, o, hash) < 0) goto done;
    limit = o->limit;
    threads = o->threads;
    if (threads > 0) openblas_set_num_threads((int)threads);
    if (file_sha_hex(ckpt, target_hash) < 0) goto done;
    const char *dname = arg_set(&a, "dataset") ? arg_str(&a, "dataset") : meta_get(&meta, "dataset");
    const char *classes = arg_set(&a, "classes") ? arg_str(&a, "classes") : arg_set(&a, "dataset") ? NULL : meta_get(&meta, "class_subset");
    if (!dname || !*dname) { err_set("%s: the checkpoint does not name its dataset; pass --dataset", ckpt); goto done; }
    if (hash) {
        if (meta_get(&meta, "topk")) topk = atol(meta_get(&meta, "topk"));
        if (o->topk >= 0) topk = o->topk;
        if (hash_data(&a, &meta, dname, classes, o->per, &d, &hdb) < 0) goto done;
    } else if (dataset_open_classes(dname, arg_str(&a, "data-dir"), classes, SPLIT_TEST, &d) < 0) {
        goto done;
    }
    have_data = 1;
    if (o->base.targeted && o->base.target >= m->spec.classes)
        { err_set("--target %d: the model has %d classes (0..%d)", o->base.target, m->spec.classes, m->spec.classes - 1); goto done; }
    for (int g = 0; g < o->ngrad; g++) {
        AttackParams t = o->base;
        attack_set_grad(&t, o->grad[g]);
        if (t.grad_source != GRAD_TRANSFER) continue;
        if (!(sur[g] = ckpt_load(t.transfer_ckpt, NULL, NULL, 0, 0, NULL))) goto done;
        if (!o->label[g]) {
            if (file_sha_hex(t.transfer_ckpt, o->hash_label[g]) < 0) goto done;
            /* crafted on the attacked model itself, "transfer" is --grad true under another name; a suite's
               transfer matrix keeps that diagonal on purpose and says so by labelling its sources */
            if (str_eq(o->hash_label[g], target_hash)) {
                err_set("--grad %s: the surrogate is the attacked checkpoint itself (same content), so its rows would repeat "
                        "--grad true; name another model's checkpoint", o->grad[g]);
                goto done;
            }
            o->label[g] = o->hash_label[g];
        }
        if (model_in_dim(sur[g]) != model_in_dim(m) || model_out_dim(sur[g]) != model_out_dim(m) ||
            str_eq(sur[g]->spec.head, "hash") != hash) {
            err_set("%s: the surrogate's input (%dx%dx%d), %s (%d) or head (%s) differ from %s's", t.transfer_ckpt,
                    sur[g]->spec.in_c, sur[g]->spec.in_h, sur[g]->spec.in_w, hash ? "bits" : "classes", sur[g]->spec.classes,
                    sur[g]->spec.head, ckpt);
            goto done;
        }
    }
    int ngrid_rows = 0, K = model_out_dim(m);
    for (int i = 0; i < o->natk; i++) {
        AttackParams t;
        if (build_params(o, o->atk[i], 0, 0, K, &t) < 0) goto done; /* refuse before any work */
        int rows = 1;
        if (o->atk[i]->kind == ATK_AUTOATTACK) {
            AttackParams comp[AA_MAX_STAGES];
            rows += autoattack_stages(&t, comp);
        }
        ngrid_rows += rows * o->neps * (o->atk[i]->uses & AU_GRAD ? o->ngrad : 1);
    }
    if (ngrid_rows > MAX_ROWS) { err_set("concord attack: %d evaluations requested; at most %d per invocation", ngrid_rows, MAX_ROWS); goto done; }
    if (hash) {
        db_codes = xmalloc(sizeof(uint64_t) * (size_t)(hdb.n + 1));
        model_codes(m, &hdb, 256, db_codes);
    }
    if (!arg_flag(&a, "quiet")) {
        if (hash)
            printf("attack %s (%s, rule %s, %d-bit hashing) on %s: %ld queries against %d clean database codes, mAP@%s\n",
                   ckpt, m->spec.arch, m->rule_name, model_out_dim(m), d.name,
                   limit > 0 && limit < d.n ? limit : (long)d.n, hdb.n, topk ? "topk" : "all");
        else
            printf("attack %s (%s, rule %s) on %s test, %ld examples\n", ckpt, m->spec.arch, m->rule_name,
                   d.name, limit > 0 && limit < d.n ? limit : (long)d.n);
    }
    if (grid) attack_keep_init(&keep, 8, model_in_dim(m));
    progress_init(&bar.p, progress_enabled(arg_flag(&a, "quiet")));
    if (bar.p.on) attack_progress_set(on_attack_progress, &bar);
    fflush(stdout);
    /* the database first: a damaged or foreign file is refused before minutes of attacking, not after */
    if (!arg_flag(&a, "no-db") && db_open(arg_set(&a, "db") ? arg_str(&a, "db") : db_default_path(), &db) < 0) goto done;

    for (int i = 0; i < o->natk; i++)
        for (int e = 0; e < o->neps; e++) {
            int ng = o->atk[i]->uses & AU_GRAD ? o->ngrad : 1;
            for (int g = 0; g < ng; g++) {
                AttackResult *r = &res[nres];
                if (build_params(o, o->atk[i], e, g, K, &r->p) < 0) goto done;
                Model *crafter = r->p.grad_source == GRAD_TRANSFER ? sur[g] : m;
                const long N = limit > 0 && limit < d.n ? limit : d.n;
                if (hash) {
                    float *apc = xmalloc(sizeof(float) * (size_t)(N + 1)), *apa = xmalloc(sizeof(float) * (size_t)(N + 1));
                    int hr = attack_hash_evaluate_ex(m, crafter, &d, &hdb, db_codes, (int)limit, (int)topk, &r->p, NULL, NULL,
                                                     &r->c, &r->h, apc, apa);
                    if (hr == 0) {
                        blob_n[nres] = (long)outcomes_bytes(OUT_HASH, N);
                        blob[nres] = xmalloc((size_t)blob_n[nres]);
                        outcomes_encode_hash(apc, apa, N, blob[nres]);
                    }
                    free(apc);
                    free(apa);
                    if (hr < 0) goto done;
                } else if (r->p.kind == ATK_AUTOATTACK) {
                    /* one row per component (counts after it), then the ensemble's */
                    AttackStages st;
                    EvalCounts ens;
                    AttackOutcome *per = xmalloc(sizeof *per * (size_t)(N + 1));
                    if (attack_evaluate_ex(m, crafter, &d, (int)limit, &r->p, NULL, NULL, grid ? &keep : NULL, &ens, per, &st) < 0) {
                        free(per);
                        goto done;
                    }
                    AttackParams ap = r->p;
                    for (int k = 0; k < st.n; k++) {
                        res[nres].p = st.p[k];
                        res[nres].c = st.c[k];
                        broke[nres] = st.broke[k];
                        attacked[nres] = st.attacked[k];
                        blob_n[nres] = (long)outcomes_bytes(OUT_CLASSIFY, N);
                        blob[nres] = xmalloc((size_t)blob_n[nres]);
                        outcomes_encode_classify_stage(per, N, k + 1, blob[nres]); /* the ensemble after component k */
                        set_robust(&res[nres], blob[nres], N);
                        nres++;
                        char fl[128];
                        attack_flags_text(flags_of(res, nres, nres - 1), fl, sizeof fl);
                        if (!arg_flag(&a, "quiet")) print_row(nres, &res[nres - 1], fl);
                    }
                    r = &res[nres];
                    r->p = ap;
                    r->c = ens;
                    blob_n[nres] = (long)outcomes_bytes(OUT_CLASSIFY, N);
                    blob[nres] = xmalloc((size_t)blob_n[nres]);
                    outcomes_encode_classify(per, N, blob[nres]);
                    set_robust(&res[nres], blob[nres], N);
                    free(per);
                } else {
                    AttackOutcome *per = xmalloc(sizeof *per * (size_t)(N + 1));
                    int er = attack_evaluate_ex(m, crafter, &d, (int)limit, &r->p, NULL, NULL, grid ? &keep : NULL, &r->c, per, NULL);
                    if (er == 0) {
                        blob_n[nres] = (long)outcomes_bytes(OUT_CLASSIFY, N);
                        blob[nres] = xmalloc((size_t)blob_n[nres]);
                        outcomes_encode_classify(per, N, blob[nres]);
                        set_robust(&res[nres], blob[nres], N);
                    }
                    free(per);
                    if (er < 0) goto done;
                }
                nres++;
                if (grid) {
                    char gp[1100];
                    grid_row[nres - 1] = 1;
                    grid_path(grid, nres, ngrid_rows > 1, gp, sizeof gp);
                    char cap[600], an[64], src[200];
                    row_label(&r->p, an, sizeof an);
                    if (r->p.kind == ATK_SQUARE && r->p.stage == 0) snprintf(src, sizeof src, "black-box");
                    else if (r->p.grad_source == GRAD_TRANSFER) snprintf(src, sizeof src, "transfer:%s", o->label[g] ? o->label[g] : "?");
                    else snprintf(src, sizeof src, "%s", attack_grad_name(r->p.grad_source));
                    snprintf(cap, sizeof cap, "%s  eps %s  gradient %s  (%s %s, %s)", an, r->p.eps_text, src, m->rule_name,
                             m->spec.arch, d.name);
                    if (attack_grid_png(gp, &keep, m->spec.in_c, m->spec.in_h, m->spec.in_w, r->p.eps, hash ? NULL : d.class_names,
                                        cap) < 0)
                        goto done;
                }
                char fl[128];
                attack_flags_text(flags_of(res, nres, nres - 1), fl, sizeof fl);
                if (!arg_flag(&a, "quiet")) (hash ? print_hash_row : print_row)(nres, r, fl);
                fault_point("eval");
            }
        }

    /* final flags (later rows can flag earlier ones), summary, database */
    int nflagged = 0;
    for (int i = 0; i < nres; i++) {
        char fl[128], nm[700];
        attack_flags_text(flags_of(res, nres, i), fl, sizeof fl);
        if (!*fl) continue;
        row_name(o, &res[i], nm, sizeof nm);
        printf("%smasking flag  row %d %s: %s\n", nflagged++ ? "" : "\n", i + 1, nm, fl);
    }
    if (arg_flag(&a, "quiet"))
        for (int i = 0; i < nres; i++) {
            char fl[128];
            attack_flags_text(flags_of(res, nres, i), fl, sizeof fl);
            (hash ? print_hash_row : print_row)(i + 1, &res[i], fl);
        }
    if (!nflagged) printf("masking flags: none\n");
    if (db) {
        /* every row of this command in one transaction: all of them or none */
        const char *rid = meta_get(&meta, "run_id");
        DbEvalRec *recs = xcalloc((size_t)(nres ? nres : 1), sizeof *recs);
        char (*fl)[128] = xcalloc((size_t)(nres ? nres : 1), sizeof *fl), (*key)[1024] = xcalloc((size_t)(nres ? nres : 1), sizeof *key);
        char (*th)[17] = xcalloc((size_t)(nres ? nres : 1), sizeof *th), (*gp)[1100] = xcalloc((size_t)(nres ? nres : 1), sizeof *gp);
        char abs_ckpt[4096];
        const char *target = realpath(ckpt, abs_ckpt) ? abs_ckpt : ckpt;
        int bad = 0;
        for (int i = 0; i < nres && !bad; i++) {
            const char *jk = arg_str(&a, "job-key");
            attack_flags_text(flags_of(res, nres, i), fl[i], sizeof fl[i]);
            if (jk && nres > 1) {
                char nm[700];
                row_name(o, &res[i], nm, sizeof nm);
                snprintf(key[i], sizeof key[i], "%s/%s", jk, nm);
                jk = key[i];
            }
            if (res[i].p.grad_source == GRAD_TRANSFER && res[i].p.kind != ATK_SQUARE &&
                file_sha_hex(res[i].p.transfer_ckpt, th[i]) < 0)
                bad = 1;
            if (grid && grid_row[i]) grid_path(grid, i + 1, nres > 1, gp[i], sizeof gp[i]);
            recs[i] = (DbEvalRec){
                .e = {.job_key = jk, .run_id = rid ? atoll(rid) : 0, .target_ckpt = target, .target_hash = target_hash,
                      .transfer_hash = *th[i] ? th[i] : NULL, .dataset = d.name, .split = hash ? "query" : "test",
                      .hash = hash ? &res[i].h : NULL, .outcomes = blob[i], .outcomes_bytes = blob_n[i],
                      .git_rev = concord_git_rev()},
                .p = &res[i].p, .c = &res[i].c, .flags = fl[i], .grid = gp[i][0] ? gp[i] : NULL};
        }
        if (!bad && db_evals_record(db, recs, nres) < 0) bad = 1;
        free(recs); free(fl); free(key); free(th); free(gp);
        if (bad) goto done;
        printf("recorded %d evaluation%s in %s\n", nres, nres == 1 ? "" : "s", db_path(db));
    }
    if (grid) printf("grid%s: %s%s\n", nres > 1 ? "s" : "", grid, nres > 1 ? " (one file per row: -<row> before the extension)" : "");
    /* AutoAttack: what each component broke, and the ensemble's own summary as the last lines */
    for (int i = 0; i < nres; i++) {
        const AttackResult *r = &res[i];
        if (r->p.kind != ATK_AUTOATTACK) continue;
        char src[600], parts[512] = "";
        if (r->p.grad_source == GRAD_TRANSFER) snprintf(src, sizeof src, "transfer:%s", r->p.transfer_ckpt);
        else if (r->p.grad_source == GRAD_FEEDBACK && r->p.eot > 1) snprintf(src, sizeof src, "feedback (eot %d)", r->p.eot);
        else snprintf(src, sizeof src, "%s", attack_grad_name(r->p.grad_source));
        int k0 = i;
        while (k0 > 0 && res[k0 - 1].p.stage > 0) k0--;
        for (int k = k0; k < i; k++) {
            size_t l = strlen(parts);
            snprintf(parts + l, sizeof parts - l, "%s%s %ld/%ld", k > k0 ? ", " : "", attack_name(&res[k].p), broke[k], attacked[k]);
        }
        double n = r->c.n ? (double)r->c.n : 1;
        printf("%s(%s) eps %s grad %s: clean %.2f%%  robust %.2f%%  (n %ld; broken by %s; %.1f s)\n", attack_name(&r->p),
               attack_version_name(r->p.version), r->p.eps_text, src, 100 * r->c.n_clean_ok / n, 100 * r->c.n_robust_ok / n,
               r->c.n, parts, r->c.seconds);
    }
    rc = 0;
done:
    attack_progress_set(NULL, NULL);
    progress_clear(&bar.p);
    if (rc) err_die();
    db_close(db);
    attack_keep_free(&keep);
    for (int g = 0; g < MAX_LIST; g++) model_free(sur[g]);
    model_free(m);
    if (have_data) dataset_close(&d);
    if (hash && have_data) dataset_close(&hdb);
    free(db_codes);
    for (int i = 0; i < MAX_ROWS; i++) { free(blob[i]); free((void *)res[i].robust); }
    free(res);
    free(broke);
    free(attacked);
    free(grid_row);
    free(blob);
    free(blob_n);
    free(o);
    return rc;
}
