/* cmd_attack.c -- `concord attack`: evaluate a checkpoint under FGSM / PGD / PGD-L2 / Square, sweeping
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
#include "results/db.h"
#include "rules/build.h"
#include "harness/checkpoint.h"
#include "harness/hash.h"
#include "harness/train.h"
#include "harness/cli/cli.h"
#include "harness/cli/commands.h"

static const OptSpec OPTS[] = {
    {"ckpt", "CKPT", "checkpoint to attack (required)", NULL},
    {"attack", "A[,A]", "fgsm | pgd | pgd-l2 | square; hashing: hash-untargeted | hash-targeted (comma list)",
     "pgd (hashing: hash-untargeted)"},
    {"eps", "E[,E]", "perturbation budgets in [0,1] pixel units: 8/255, 0.03 (comma list)", "8/255"},
    {"steps", "N", "pgd: iterations", "10 (hashing: 100)"},
    {"task", "classify|hash", "what the checkpoint does (default: its meta task, else classify)", NULL},
    {"queries-per-class", "N", "hash: queries per class of the retrieval split (default: the checkpoint's, else 100)", NULL},
    {"topk", "N", "hash: mAP@topk, 0 = the whole database (default: the checkpoint's, else 0)", NULL},
    {"alpha", "X", "pgd: step size, absolute (2/255) or relative to eps (r0.25); default 2.5*eps/steps", NULL},
    {"restarts", "N", "pgd: random restarts, worst case kept per example", "1"},
    {"random-start", NULL, "pgd: start at a random point of the ball (default)", NULL},
    {"no-random-start", NULL, "pgd: start at the clean input", NULL},
    {"targeted", NULL, "targeted attack (class --target, default (y+1) mod K)", NULL},
    {"target", "K", "targeted: the target class (-1 = (y+1) mod K)", "-1"},
    {"grad", "S[,S]", "gradient source: true | feedback | transfer:CKPT (comma list)", "true"},
    {"eot", "N", "feedback source: rule draws averaged per step (brSF)", "1"},
    {"queries", "N", "square: query budget per example", "1000"},
    {"p-init", "X", "square: initial fraction of pixels per square", "0.05"},
    {"seed", "S", "attack seed (random starts, Square)", "0"},
    {"batch", "N", "examples per batch", "256"},
    {"dataset", "D", "test data (default: the checkpoint's dataset)", NULL},
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
    {"quiet", NULL, "no per-row lines, only the summary", NULL},
    {0},
};

#define MAX_LIST 32
#define MAX_ROWS 512

/* Splits a comma list into at most MAX_LIST items (copied into buf); empty and repeated items are errors. */
static int split_list(const char *opt, const char *text, char *buf, size_t cap, char **items) {
    return arg_list_text("attack", opt, text, buf, cap, items, MAX_LIST);
}


static void print_row(int idx, const AttackResult *r, const char *flags) {
    const EvalCounts *c = &r->c;
    char src[600];
    if (r->p.kind == ATK_SQUARE) snprintf(src, sizeof src, "none (%d queries)", r->p.queries);
    else if (r->p.grad_source == GRAD_TRANSFER) snprintf(src, sizeof src, "transfer:%s", r->p.transfer_ckpt);
    else if (r->p.grad_source == GRAD_FEEDBACK && r->p.eot > 1) snprintf(src, sizeof src, "feedback (eot %d)", r->p.eot);
    else snprintf(src, sizeof src, "%s", attack_grad_name(r->p.grad_source));
    double n = c->n ? (double)c->n : 1;
    printf("%3d %-6s eps %-8s grad %-18s clean %6.2f%%  robust %6.2f%%  success %6.2f%%  flipped %ld  zero-grad %ld"
           "  linf %.4f  l2 %.3f  (n %ld, %.1f s)  flags: %s\n",
           idx, attack_name(&r->p), r->p.eps_text, src, 100 * c->n_clean_ok / n, 100 * c->n_robust_ok / n,
           c->n_clean_ok ? 100.0 * (c->n_clean_ok - c->n_robust_ok) / c->n_clean_ok : 0.0, c->n_flipped, c->n_zero_grad,
           c->mean_linf, c->mean_l2, c->n, c->seconds, *flags ? flags : "-");
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
    snprintf(out, n, "%s/%s/%s%s%s", attack_name(&r->p), r->p.eps_text,
             r->p.kind == ATK_SQUARE ? "none" : attack_grad_name(r->p.grad_source),
             r->p.grad_source == GRAD_TRANSFER && r->p.kind != ATK_SQUARE ? ":" : "",
             r->p.grad_source == GRAD_TRANSFER && r->p.kind != ATK_SQUARE ? label : "");
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
        {"p-init", AU_QUERIES}, {"targeted", AU_TARGET}, {"target", AU_TARGET},
    };
    for (size_t i = 0; i < ARRAY_LEN(USE); i++)
        if (arg_set(a, USE[i].opt) && !(uses & USE[i].bit))
            return err_set("--%s does not apply to --attack %s", USE[i].opt, atext);
    if (arg_flag(a, "random-start") && arg_flag(a, "no-random-start"))
        return err_set("--random-start and --no-random-start contradict each other");
    long v = hash ? 100 : 10;
    if (arg_set(a, "steps") && arg_int(a, "steps", 0, 100000, &v) < 0) return -1;
    p->steps = (int)v;
    if (arg_int(a, "restarts", 1, 1024, &v) < 0) return -1;
    p->restarts = (int)v;
    p->random_start = !arg_flag(a, "no-random-start");
    p->targeted = arg_flag(a, "targeted");
    if (arg_int(a, "target", -1, 100000, &v) < 0) return -1;
    p->target = (int)v;
    if (arg_set(a, "target") && !p->targeted) return err_set("--target needs --targeted");
    if (arg_int(a, "eot", 1, 10000, &v) < 0) return -1;
    p->eot = (int)v;
    if (arg_int(a, "queries", 1, 100000000, &v) < 0) return -1;
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
 * queries per class given on the command line, -1 = the checkpoint's). */
static int hash_data(const Args *a, const CkptMeta *meta, const char *dname, long per, Dataset *q, Dataset *db) {
    const char *mp = meta_get(meta, "queries_per_class"), *ms = meta_get(meta, "data_seed");
    if (per < 0) per = mp ? atol(mp) : 100;
    uint64_t seed = ms ? strtoull(ms, NULL, 10) : 0;
    Dataset tr, te, training;
    if (dataset_open(dname, arg_str(a, "data-dir"), SPLIT_TRAIN, &tr) < 0) return -1;
    if (dataset_open(dname, arg_str(a, "data-dir"), SPLIT_TEST, &te) < 0) { dataset_close(&tr); return -1; }
    int rc = hash_splits(&tr, &te, (int)per, 1, seed, q, db, &training);
    dataset_close(&tr);
    dataset_close(&te);
    if (rc == 0) dataset_close(&training);
    snprintf(q->name, sizeof q->name, "%s", dname);
    return rc;
}

int cmd_attack(int argc, char **argv) {
    Args a;
    int pr = args_parse(&a, "attack", "--ckpt CKPT --attack fgsm|pgd|pgd-l2|square|hash-untargeted|hash-targeted --eps 8/255[,E...] [--grad true|feedback|transfer:CKPT[,...]] [options]",
                        OPTS, argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    const char *ckpt = arg_str(&a, "ckpt");
    if (!ckpt) { err_set("concord attack: --ckpt CKPT is required"); return err_die(); }
    Opts *o = xcalloc(1, sizeof *o);
    AttackResult *res = xcalloc(MAX_ROWS, sizeof *res);
    Model *m = NULL, *sur[MAX_LIST] = {0};
    Dataset d = {0}, hdb = {0};
    int have_data = 0, rc = 1, nres = 0, hash = 0;
    long limit, threads, topk = 0;
    uint64_t *db_codes = NULL;
    Db *db = NULL;
    CkptMeta meta;
    AttackKeep keep = {0};
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
    if (!dname || !*dname) { err_set("%s: the checkpoint does not name its dataset; pass --dataset", ckpt); goto done; }
    if (hash) {
        if (meta_get(&meta, "topk")) topk = atol(meta_get(&meta, "topk"));
        if (o->topk >= 0) topk = o->topk;
        if (hash_data(&a, &meta, dname, o->per, &d, &hdb) < 0) goto done;
    } else if (dataset_open(dname, arg_str(&a, "data-dir"), SPLIT_TEST, &d) < 0) {
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
    int ngrid_rows = 0;
    for (int i = 0; i < o->natk; i++) ngrid_rows += o->neps * (o->atk[i]->uses & AU_GRAD ? o->ngrad : 1);
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

    for (int i = 0; i < o->natk; i++)
        for (int e = 0; e < o->neps; e++) {
            int ng = o->atk[i]->uses & AU_GRAD ? o->ngrad : 1;
            for (int g = 0; g < ng; g++) {
                AttackResult *r = &res[nres];
                r->p = o->base;
                r->p.kind = o->atk[i]->kind;
                r->p.norm = o->atk[i]->norm;
                r->p.objective = o->atk[i]->objective;
                if (r->p.objective == OBJ_HASH) { r->p.targeted = o->atk[i]->targeted; r->p.target = -1; }
                attack_set_eps(&r->p, o->eps[e]);
                if (o->atk[i]->uses & AU_GRAD) attack_set_grad(&r->p, o->grad[g]);
                else r->p.grad_source = GRAD_TRUE;
                if (r->p.kind != ATK_PGD) { r->p.steps = r->p.kind == ATK_FGSM ? 1 : 0; r->p.restarts = 1; r->p.random_start = 0; }
                if (r->p.grad_source != GRAD_FEEDBACK) r->p.eot = 1;
                if (r->p.kind != ATK_SQUARE) { r->p.queries = 0; r->p.p_init = 0; }
                if (r->p.kind == ATK_FGSM) { snprintf(r->p.alpha_text, sizeof r->p.alpha_text, "%s", r->p.eps_text); r->p.alpha = r->p.eps; }
                else if (r->p.kind == ATK_PGD) { if (attack_set_alpha(&r->p, o->alpha) < 0) goto done; }
                else { r->p.alpha_text[0] = 0; r->p.alpha = 0; }
                Model *crafter = r->p.grad_source == GRAD_TRANSFER ? sur[g] : m;
                if (hash) {
                    if (attack_hash_evaluate(m, crafter, &d, &hdb, db_codes, (int)limit, (int)topk, &r->p, NULL, NULL, &r->c, &r->h) < 0)
                        goto done;
                } else if (attack_evaluate(m, crafter, &d, (int)limit, &r->p, NULL, NULL, grid ? &keep : NULL, &r->c) < 0) {
                    goto done;
                }
                nres++;
                if (grid) {
                    char gp[1100];
                    grid_path(grid, nres, ngrid_rows > 1, gp, sizeof gp);
                    if (attack_grid_png(gp, &keep, m->spec.in_c, m->spec.in_h, m->spec.in_w, r->p.eps) < 0) goto done;
                }
                char fl[128];
                attack_flags_text(attack_flags(res, nres, nres - 1), fl, sizeof fl);
                if (!arg_flag(&a, "quiet")) (hash ? print_hash_row : print_row)(nres, r, fl);
            }
        }

    /* final flags (later rows can flag earlier ones), summary, database */
    int nflagged = 0;
    for (int i = 0; i < nres; i++) {
        char fl[128], nm[700];
        attack_flags_text(attack_flags(res, nres, i), fl, sizeof fl);
        if (!*fl) continue;
        row_name(o, &res[i], nm, sizeof nm);
        printf("%smasking flag  row %d %s: %s\n", nflagged++ ? "" : "\n", i + 1, nm, fl);
    }
    if (arg_flag(&a, "quiet"))
        for (int i = 0; i < nres; i++) {
            char fl[128];
            attack_flags_text(attack_flags(res, nres, i), fl, sizeof fl);
            (hash ? print_hash_row : print_row)(i + 1, &res[i], fl);
        }
    if (!nflagged) printf("masking flags: none\n");
    if (!arg_flag(&a, "no-db")) {
        const char *path = arg_set(&a, "db") ? arg_str(&a, "db") : db_default_path();
        if (db_open(path, &db) < 0) goto done;
        const char *rid = meta_get(&meta, "run_id");
        for (int i = 0; i < nres; i++) {
            char fl[128], key[1024], th[17] = "";
            const char *jk = arg_str(&a, "job-key");
            attack_flags_text(attack_flags(res, nres, i), fl, sizeof fl);
            if (jk && nres > 1) {
                char nm[700];
                row_name(o, &res[i], nm, sizeof nm);
                snprintf(key, sizeof key, "%s/%s", jk, nm);
                jk = key;
            }
            if (res[i].p.grad_source == GRAD_TRANSFER && res[i].p.kind != ATK_SQUARE &&
                file_sha_hex(res[i].p.transfer_ckpt, th) < 0)
                goto done;
            char abs_ckpt[4096];
            DbEval ev = {.job_key = jk, .run_id = rid ? atoll(rid) : 0, .target_ckpt = realpath(ckpt, abs_ckpt) ? abs_ckpt : ckpt, .target_hash = target_hash,
                         .transfer_hash = *th ? th : NULL, .dataset = d.name, .split = hash ? "query" : "test",
                         .hash = hash ? &res[i].h : NULL};
            int64_t eval_id;
            if (db_eval_record(db, &ev, &res[i].p, &res[i].c, fl, &eval_id) < 0) goto done;
            if (grid) {
                char gp[1100];
                grid_path(grid, i + 1, nres > 1, gp, sizeof gp);
                if (db_artifact(db, 0, eval_id, "grid", gp, NULL) < 0) goto done;
            }
        }
        printf("recorded %d evaluation%s in %s\n", nres, nres == 1 ? "" : "s", db_path(db));
    }
    if (grid) printf("grid%s: %s%s\n", nres > 1 ? "s" : "", grid, nres > 1 ? " (one file per row: -<row> before the extension)" : "");
    rc = 0;
done:
    if (rc) err_die();
    db_close(db);
    attack_keep_free(&keep);
    for (int g = 0; g < MAX_LIST; g++) model_free(sur[g]);
    model_free(m);
    if (have_data) dataset_close(&d);
    if (hash && have_data) dataset_close(&hdb);
    free(db_codes);
    free(res);
    free(o);
    return rc;
}
