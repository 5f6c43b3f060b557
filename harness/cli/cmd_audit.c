/* cmd_audit.c -- `concord audit --ckpt C [--surrogate S] [--eps LIST] [--budget quick|standard]`: a one-command
 * robustness audit of one checkpoint, everything recorded in the results database.
 *
 *   1. clean accuracy (the eps 0 rows);
 *   2. AutoAttack through the true gradient (standard budget; quick: APGD-CE 20 steps + Square 500);
 *   3. the same through the rule's feedback path when the rule is not bp (brSF's feedback is random:
 *      AutoAttack's `rand` version, APGD-CE and APGD-DLR with EOT 20);
 *   4. transfer from the surrogate when given (APGD-CE on the surrogate, evaluated on the target);
 *   5. the checks AutoAttack's authors run: deterministic outputs (two forward passes agree) and a random
 *      gradient named, zero gradients, Square or transfer stronger than the white-box attacks, robust
 *      accuracy rising with eps, eps 0 reproducing clean accuracy; and the feedback path against the true
 *      gradient on the same examples (paired exact McNemar: the gap that is gradient masking);
 *   6. the per-example worst case over all of it (results/worst.h), and a verdict paragraph naming the
 *      decisive attack and source.
 * The attacks are `concord attack` itself (cmd_attack, in this process), so the rows and their masking
 * flags are exactly what the attack command records; the audit reads them back to judge. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/core.h"
#include "attacks/flags.h"
#include "results/db.h"
#include "results/outcomes.h"
#include "results/stats.h"
#include "results/worst.h"
#include "rules/build.h"

#include <sqlite3.h>

static const OptSpec OPTS[] = {
    {"ckpt", "CKPT", "checkpoint to audit (required)", NULL},
    {"surrogate", "CKPT", "a surrogate model for a transfer attack (e.g. the BP fine-tune of the same task)", NULL},
    {"eps", "E[,E]", "budgets (0 is always added, to check that it reproduces clean accuracy)", "8/255"},
    {"norm", "linf|l2", "threat model", "linf"},
    {"budget", "quick|standard", "standard: AutoAttack; quick: APGD-CE 20 steps + Square 500 queries", "standard"},
    {"limit", "N", "audit the first N test examples (0 = all)", "1000"},
    {"dataset", "D", "test data (default: the checkpoint's)", NULL},
    {"classes", "LIST", "class subset (default: the checkpoint's)", NULL},
    {"data-dir", "DIR", "where the dataset files are", NULL},
    {"db", "PATH", "results database (default out/concord.db or $CONCORD_DB)", NULL},
    {"threads", "N", "OpenBLAS threads (0 = OpenBLAS default)", "0"},
    {"seed", "S", "attack seed", "0"},
    {0},
};

/* runs `concord attack ARGS...` in this process; returns its exit status */
static int run_attack(char **argv) {
    int argc = 0;
    while (argv[argc]) argc++;
    printf("\n$ concord attack");
    for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    fflush(stdout);
    return cmd_attack(argc, argv);
}

typedef struct Argv { char *v[64]; int n; char store[64][1200]; } Argv;
static void av(Argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void av(Argv *a, const char *fmt, ...) {
    CHECK(a->n < 62);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->store[a->n], sizeof a->store[0], fmt, ap);
    va_end(ap);
    a->v[a->n] = a->store[a->n];
    a->v[++a->n] = NULL;
}

/* the options every attack of the audit shares */
static void common(Argv *a, const Args *o, const char *db, const char *eps) {
    av(a, "--ckpt");
    av(a, "%s", arg_str(o, "ckpt"));
    av(a, "--eps");
    av(a, "%s", eps);
    av(a, "--limit");
    av(a, "%s", arg_str(o, "limit"));
    av(a, "--db");
    av(a, "%s", db);
    av(a, "--seed");
    av(a, "%s", arg_str(o, "seed"));
    av(a, "--threads");
    av(a, "%s", arg_str(o, "threads"));
    av(a, "--quiet");
    static const char *const pass[] = {"dataset", "classes", "data-dir"};
    for (size_t i = 0; i < ARRAY_LEN(pass); i++)
        if (arg_set(o, pass[i])) { av(a, "--%s", pass[i]); av(a, "%s", arg_str(o, pass[i])); }
}

static const char *col(sqlite3_stmt *st, int i) {
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

/* two forward passes of the clean test examples agree bit for bit (an inference-mode model is a function) */
static int outputs_deterministic(const Args *o, Model *m, const char *dname, const char *classes, long limit) {
    Dataset d;
    if (dataset_open_classes(dname, arg_str(o, "data-dir"), classes, SPLIT_TEST, &d) < 0) return -1;
    int n = (int)(limit > 0 && limit < d.n ? limit : d.n);
    if (n > 256) n = 256;
    Work *w = work_create(m, n);
    int K = model_out_dim(m);
    float *a = xmalloc(sizeof(float) * (size_t)n * K);
    memcpy(a, model_forward(m, w, d.x, n, FWD_INFER), sizeof(float) * (size_t)n * K);
    const float *b = model_forward(m, w, d.x, n, FWD_INFER);
    int same = memcmp(a, b, sizeof(float) * (size_t)n * K) == 0;
    free(a);
    work_free(w);
    dataset_close(&d);
    return same;
}

/* The feedback path against the true gradient, paired per example: for each eps, every feedback row of
 * this audit against the true-gradient row of the same attack on the same examples. A gap above
 * MASK_FEEDBACK_POINTS with exact McNemar p < MASK_FEEDBACK_P is gradient masking (attacks/flags.h).
 * Prints one line per pair; returns how many pairs were masked (the largest gap in *gap_out, its eps in
 * eps_out), or -1 with err_set. */
static int feedback_vs_true(Db *h, long first_id, const char *target_hash, double *gap_out, char *eps_out, size_t cap) {
    char q[1024];
    snprintf(q, sizeof q,
             "SELECT t.eps_text, t.attack, t.id, t.outcomes, f.id, f.outcomes FROM evals t JOIN evals f"
             " ON f.target_hash = t.target_hash AND f.attack = t.attack AND f.norm = t.norm AND f.eps = t.eps AND f.n = t.n"
             " WHERE t.id > %ld AND f.id > %ld AND t.target_hash = '%s' AND t.grad_source = 'true'"
             " AND f.grad_source = 'feedback' AND t.eps > 0 AND t.outcomes IS NOT NULL AND f.outcomes IS NOT NULL"
             " ORDER BY t.eps, t.id",
             first_id, first_id, target_hash);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(h), q, -1, &st, NULL) != SQLITE_OK)
        return err_set("audit: %s", sqlite3_errmsg(db_sqlite(h)));
    int masked = 0, rc = 0, pairs = 0;
    *gap_out = 0;
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        Outcomes t = {0}, f = {0};
        if (outcomes_decode(sqlite3_column_blob(st, 3), sqlite3_column_bytes(st, 3), sqlite3_column_int64(st, 2), &t) < 0 ||
            outcomes_decode(sqlite3_column_blob(st, 5), sqlite3_column_bytes(st, 5), sqlite3_column_int64(st, 4), &f) < 0) {
            outcomes_free(&t);
            rc = -1;
            break;
        }
        long only_f = 0, only_t = 0, rt = 0, rf = 0, same = t.n == f.n;
        for (long i = 0; same && i < t.n; i++) {
            if (t.index[i] != f.index[i]) { same = 0; break; }
            rt += t.robust_ok[i];
            rf += f.robust_ok[i];
            only_f += f.robust_ok[i] && !t.robust_ok[i];
            only_t += t.robust_ok[i] && !f.robust_ok[i];
        }
        if (same && t.n > 0) {
            double gap = 100.0 * (double)(rf - rt) / (double)t.n, pv = stats_mcnemar_exact(only_f, only_t);
            int m = gap > MASK_FEEDBACK_POINTS && pv < MASK_FEEDBACK_P;
            printf("  %-44s eps %-7s %s: feedback %.1f %% vs true %.1f %% (%+.1f points; robust only through feedback %ld, "
                   "only through true %ld; McNemar p = %.2g)%s\n",
                   pairs++ ? "" : "feedback path vs true gradient (paired)", (const char *)sqlite3_column_text(st, 0),
                   (const char *)sqlite3_column_text(st, 1), 100.0 * rf / t.n, 100.0 * rt / t.n, gap, only_f, only_t, pv,
                   m ? "  MASKING" : "");
            if (m) {
                masked++;
                if (gap > *gap_out) {
                    *gap_out = gap;
                    snprintf(eps_out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
                }
            }
        }
        outcomes_free(&t);
        outcomes_free(&f);
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : masked;
}

int cmd_audit(int argc, char **argv) {
    Args a;
    int pr = args_parse(&a, "audit", "--ckpt CKPT [--surrogate CKPT] [--eps LIST] [--budget quick|standard] [options]", OPTS,
                        argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    const char *ckpt = arg_str(&a, "ckpt"), *sur = arg_str(&a, "surrogate"), *budget = arg_str(&a, "budget");
    if (!ckpt) { err_set("concord audit: --ckpt CKPT is required"); return err_die(); }
    if (!str_eq(budget, "quick") && !str_eq(budget, "standard")) {
        err_set("--budget %s: use quick (APGD-CE 20 steps + Square 500) or standard (AutoAttack)", budget);
        return err_die();
    }
    const char *norm = arg_str(&a, "norm");
    if (!str_eq(norm, "linf") && !str_eq(norm, "l2")) { err_set("--norm %s: use linf or l2", norm); return err_die(); }
    const int l2 = str_eq(norm, "l2");
    long limit;
    if (arg_int(&a, "limit", 0, 100000000, &limit) < 0) return err_die();
    CkptMeta meta;
    Model *m = ckpt_load(ckpt, NULL, NULL, 0, 0, &meta);
    if (!m) return err_die();
    char rule[32];
    snprintf(rule, sizeof rule, "%s", m->rule_name[0] ? m->rule_name : "bp");
    int random_feedback = str_eq(rule, "brsf");
    char eps[512], db[1024];
    snprintf(eps, sizeof eps, "0,%s", arg_str(&a, "eps"));
    snprintf(db, sizeof db, "%s", arg_set(&a, "db") ? arg_str(&a, "db") : db_default_path());
    char target_hash[17];
    if (file_sha_hex(ckpt, target_hash) < 0) { model_free(m); return err_die(); }
    const char *dname = arg_set(&a, "dataset") ? arg_str(&a, "dataset") : meta_get(&meta, "dataset"); /* into meta: lives on */
    const char *classes = arg_set(&a, "classes") ? arg_str(&a, "classes") : arg_set(&a, "dataset") ? NULL : meta_get(&meta, "class_subset");
    if (!dname) { model_free(m); err_set("%s: the checkpoint does not name its dataset; pass --dataset", ckpt); return err_die(); }
    printf("audit %s: %s, rule %s, %s, eps %s (%s), budget %s, %s examples\n", ckpt, m->spec.arch, rule, dname, eps, norm, budget,
           limit ? arg_str(&a, "limit") : "all");
    int det = outputs_deterministic(&a, m, dname, classes, limit);
    model_free(m);
    if (det < 0) return err_die();

    /* the evaluations this audit adds start after the database's last id */
    long first_id = 0;
    {
        Db *h = NULL;
        if (db_open(db, &h) < 0) return err_die();
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db_sqlite(h), "SELECT coalesce(max(id), 0) FROM evals", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            first_id = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        db_close(h);
    }
    /* 2. the true gradient */
    Argv t = {0};
    common(&t, &a, db, eps);
    if (str_eq(budget, "standard")) {
        av(&t, "--attack");
        av(&t, l2 ? "autoattack-l2" : "autoattack");
    } else {
        av(&t, "--attack");
        av(&t, l2 ? "apgd-ce-l2,square-l2" : "apgd-ce,square");
        av(&t, "--steps");
        av(&t, "20");
        av(&t, "--queries");
        av(&t, "500");
    }
    av(&t, "--grad");
    av(&t, "true");
    if (run_attack(t.v) != 0) return 1;
    /* 3. the rule's own feedback path */
    if (!str_eq(rule, "bp")) {
        Argv f = {0};
        common(&f, &a, db, eps);
        av(&f, "--attack");
        if (str_eq(budget, "standard")) {
            av(&f, l2 ? "autoattack-l2" : "autoattack");
            if (random_feedback) { av(&f, "--version"); av(&f, "rand"); }
        } else {
            av(&f, l2 ? "apgd-ce-l2" : "apgd-ce");
            av(&f, "--steps");
            av(&f, "20");
            if (random_feedback) { av(&f, "--eot"); av(&f, "20"); }
        }
        av(&f, "--grad");
        av(&f, "feedback");
        if (run_attack(f.v) != 0) return 1;
    }
    /* 4. transfer from the surrogate */
    if (sur) {
        Argv s = {0};
        common(&s, &a, db, eps);
        av(&s, "--attack");
        av(&s, l2 ? "apgd-ce-l2" : "apgd-ce");
        if (str_eq(budget, "quick")) { av(&s, "--steps"); av(&s, "20"); }
        av(&s, "--grad");
        av(&s, "transfer:%s", sur);
        if (run_attack(s.v) != 0) return 1;
    }

    /* 5-6. read back, check, judge */
    Db *h = NULL;
    if (db_open_readonly(db, &h) < 0) return err_die();
    printf("\n== audit of %s ==\n", ckpt);
    printf("outputs: %s\n", det ? "deterministic (two inference passes agree bit for bit)"
                                : "NOT deterministic: two inference passes differ; use EOT (randomised model)");
    if (random_feedback)
        printf("gradient: the feedback path is random (brSF redraws B): AutoAttack's rand version with EOT 20 was used "
               "for it; the true gradient is deterministic\n");
    char q[1024];
    snprintf(q, sizeof q,
             "SELECT v.attack_label || '/' || v.source_label, e.eps_text, e.n, e.n_clean_ok, e.n_robust_ok, e.n_zero_grad, e.flags"
             " FROM evals e JOIN eval_view v ON v.eval_id = e.id WHERE e.id > %ld AND e.target_hash = '%s' ORDER BY e.eps, e.id",
             first_id, target_hash);
    sqlite3_stmt *st = NULL;
    int zero = 0, bb = 0, rise = 0, eps0_bad = 0, rows = 0;
    if (sqlite3_prepare_v2(db_sqlite(h), q, -1, &st, NULL) != SQLITE_OK) {
        err_set("%s: %s", db, sqlite3_errmsg(db_sqlite(h)));
        db_close(h);
        return err_die();
    }
    printf("%-32s %8s %6s %8s %8s  %s\n", "attack/source", "eps", "n", "clean %", "robust %", "flags");
    while (sqlite3_step(st) == SQLITE_ROW) {
        long n = sqlite3_column_int64(st, 2), c = sqlite3_column_int64(st, 3), r = sqlite3_column_int64(st, 4);
        const char *fl = col(st, 6), *e = col(st, 1);
        printf("%-32s %8s %6ld %8.2f %8.2f  %s\n", col(st, 0), e, n, n ? 100.0 * c / n : 0, n ? 100.0 * r / n : 0, *fl ? fl : "-");
        zero |= sqlite3_column_int64(st, 5) > 0;
        bb |= strstr(fl, "blackbox-stronger") != NULL;
        rise |= strstr(fl, "eps-rise") != NULL;
        eps0_bad |= strstr(fl, "eps0-mismatch") != NULL;
        rows++;
    }
    sqlite3_finalize(st);
    printf("\nchecks (Croce & Hein 2020):\n");
    printf("  %-44s %s\n", "eps = 0 reproduces clean accuracy", eps0_bad ? "FAILED" : "ok");
    printf("  %-44s %s\n", "zero input gradients", zero ? "PRESENT (gradient masking: see zero-grad flags)" : "none");
    printf("  %-44s %s\n", "Square or transfer stronger than white-box", bb ? "YES (a sign of gradient masking)" : "no");
    printf("  %-44s %s\n", "robust accuracy rising with eps", rise ? "YES (the attack is failing)" : "no");
    printf("  %-44s %s\n", "deterministic outputs", det ? "yes" : "NO");
    double fb_gap = 0;
    char fb_eps[32] = "";
    int fb_masked = str_eq(rule, "bp") ? 0 : feedback_vs_true(h, first_id, target_hash, &fb_gap, fb_eps, sizeof fb_eps);
    if (fb_masked < 0) { db_close(h); return err_die(); }
    /* the worst case per eps, over everything this checkpoint has ever been evaluated with on these examples */
    WorstRow *w = NULL;
    int nw = 0;
    if (worst_load(h, &w, &nw) < 0) { db_close(h); return err_die(); }
    printf("\nper-example worst case over every attack and gradient source (this checkpoint, all its evaluations):\n");
    const WorstRow *decisive = NULL;
    for (int i = 0; i < nw; i++) {
        if (!str_eq(w[i].target_hash, target_hash) || !str_eq(w[i].norm, norm) || w[i].set != 0) continue;
        printf("  eps %-8s n %-5ld clean %6.2f %%  worst-case robust %6.2f %%  broken first by: %s\n", w[i].eps_text, w[i].n,
               w[i].n ? 100.0 * w[i].clean / w[i].n : 0, w[i].n ? 100.0 * w[i].robust / w[i].n : 0,
               w[i].breakdown[0] ? w[i].breakdown : "-");
        if (w[i].eps > 0) decisive = &w[i]; /* the largest eps (rows are sorted by eps) */
    }
    printf("\nverdict: ");
    if (!decisive) {
        printf("no evaluation at eps > 0 recorded for this checkpoint\n");
    } else {
        char first[256] = "", what[256] = "no attack broke any example";
        if (decisive->breakdown[0] && sscanf(decisive->breakdown, "%255[^,]", first) == 1) {
            char *sp = strrchr(first, ' '), *slash = strchr(first, '/'); /* "attack/source count" */
            if (sp && slash && slash < sp) {
                *sp = 0;
                *slash = 0;
                snprintf(what, sizeof what, "the decisive attack was %s through the %s gradient (it broke %s examples first)",
                         first, slash + 1, sp + 1);
            }
        }
        printf("at eps %s the model keeps %.1f %% of %ld examples correct against every attack and gradient source "
               "(clean %.1f %%); %s.", decisive->eps_text, 100.0 * decisive->robust / decisive->n, decisive->n,
               100.0 * decisive->clean / decisive->n, what);
        if (zero || bb || rise || eps0_bad || !det)
            printf(" Warnings above (%s%s%s%s%s) mean this number may still overstate robustness.", zero ? "zero gradients " : "",
                   bb ? "black-box stronger " : "", rise ? "eps rise " : "", eps0_bad ? "eps0 mismatch " : "",
                   det ? "" : "random outputs");
        else if (!str_eq(rule, "bp"))
            printf(" The worst case includes the true gradient, so it does not rely on the %s feedback path.", rule);
        if (fb_masked > 0)
            printf(" Attacked through its own %s feedback path the model looks up to %.1f points more robust (eps %s, "
                   "paired McNemar p < %g): that extra robustness is gradient masking, not robustness.",
                   rule, fb_gap, fb_eps, MASK_FEEDBACK_P);
        printf("\n");
    }
    printf("recorded in %s (%d evaluation rows; concord query worst --db %s)\n", db, rows, db);
    worst_free(w, nw);
    db_close(h);
    return 0;
}
