/* test_report.c -- the figures and the report on a database with per-example outcomes (results/plot.h,
 * results/report.h): robust_eps's bands (Wilson for one seed, checked against the closed form here), its
 * eps tics as written, per-panel x ranges, captions, the worst-case panel, BP in every panel, the legend
 * panel; the verdict figure against verdict_compute; alignment without BP and without all-zero panels;
 * one naming scheme; and the HTML report opened in headless Chromium (every image decodes, no error).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/core.h"
#include "results/db.h"
#include "results/outcomes.h"
#include "results/plot.h"
#include "results/verdict.h"
#include "tests/test.h"

enum { NEX = 200 };

static int64_t run(Db *db, const char *key, const char *kind, const char *rule, const char *dataset, long seed) {
    DbRun r = {.job_key = key, .kind = kind, .rule = rule, .model = "lenet5", .dataset = dataset, .data_seed = seed,
               .config_json = "{\"epochs\":\"2\",\"lr\":\"0.01\"}"};
    int64_t id = 0;
    CHECK(db_run_begin(db, &r, &id) == 0);
    for (int e = 1; e <= 2; e++) {
        EpochStats st;
        memset(&st, 0, sizeof st);
        st.epoch = e;
        st.epochs = 2;
        st.train_acc = 0.80 + 0.05 * e;
        st.val_acc = 0.78 + 0.05 * e;
        st.nalign = 2;
        snprintf(st.align[0].name, sizeof st.align[0].name, "fc1");
        snprintf(st.align[1].name, sizeof st.align[1].name, "fc3");
        int bp = str_eq(rule, "bp");
        st.align[0].angle_bw = bp ? 0 : 40 + e;
        st.align[0].grad_angle = bp ? 0 : 30 + e;
        st.align[1].angle_bw = bp ? 0 : 45;
        st.align[1].grad_angle = 0; /* the classifier's error is the same for every rule */
        CHECK(db_run_epoch(db, id, &st) == 0);
    }
    CHECK(db_run_end(db, id, "finished", NULL, NULL, NULL, 0.9) == 0);
    return id;
}

/* one evaluation: the first k of NEX examples robust, every example clean-correct; surrogate: the run of a
 * transfer evaluation's surrogate (src GRAD_TRANSFER), else 0 */
static void eval_from(Db *db, int64_t run_id, const char *key, int kind, int src, int64_t surrogate, const char *eps_text,
                      double eps, int k) {
    AttackOutcome *o = xcalloc(NEX, sizeof *o);
    EvalCounts c = {.n = NEX};
    for (int i = 0; i < NEX; i++) {
        o[i].index = i;
        o[i].y = i % 5;
        o[i].pred_clean = o[i].y;
        o[i].clean_ok = 1;
        o[i].robust_ok = i < k;
        o[i].pred_adv = i < k ? o[i].y : (o[i].y + 1) % 5;
        c.n_clean_ok++;
        c.n_robust_ok += i < k;
    }
    AttackParams p;
    attack_params_default(&p);
    p.kind = kind;
    p.grad_source = src;
    p.steps = kind == ATK_PGD ? 10 : 0;
    if (kind == ATK_SQUARE) p.queries = 1000;
    snprintf(p.eps_text, sizeof p.eps_text, "%s", eps_text);
    p.eps = eps;
    size_t bytes = outcomes_bytes(OUT_CLASSIFY, NEX);
    uint8_t *blob = xmalloc(bytes);
    outcomes_encode_classify(o, NEX, blob);
    DbEval e = {.job_key = key, .run_id = run_id, .target_ckpt = key, .transfer_run = surrogate, .dataset = "fmnist[5-9]",
                .outcomes = blob, .outcomes_bytes = (long)bytes};
    CHECK(db_eval_record(db, &e, &p, &c, "", NULL) == 0);
    free(blob);
    free(o);
}

static void eval(Db *db, int64_t run_id, const char *key, int kind, int src, const char *eps_text, double eps, int k) {
    eval_from(db, run_id, key, kind, src, 0, eps_text, eps, k);
}

/* BP pre-trained on fmnist[0-4] (attacked through the true gradient), fine-tuned on fmnist[5-9] with bp and usf
 * (seeds 0, 1) and frsf (seed 0 only). PGD-10 at eps 0, 2/255, 8/255: bp through the true gradient only, the
 * others through true and feedback; Square at 8/255. Robust counts (of 200) at 8/255: bp true 60 and 62, usf
 * true 60 and 62 (as BP: its feedback's 150 and 160 are masking), frsf true 90, frsf feedback 120; Square 100
 * everywhere. The robust examples are always the first k, so a worst case is the smallest k. */
static void fixture(const char *path) {
    unlink(path);
    Db *db = NULL;
    CHECK(db_open(path, &db) == 0);
    int64_t pre = run(db, "pre", "train", "bp", "fmnist[0-4]", 0);
    eval(db, pre, "pre/pgd/8", ATK_PGD, GRAD_TRUE, "8/255", 8.0 / 255, 20);
    eval(db, pre, "pre/pgd/0", ATK_PGD, GRAD_TRUE, "0", 0, NEX);
    const char *rules[] = {"bp", "usf", "frsf"};
    const int tr8[3][2] = {{60, 62}, {60, 62}, {90, 0}}, fb8[3][2] = {{0, 0}, {150, 160}, {120, 0}};
    for (int r = 0; r < 3; r++)
        for (int s = 0; s < (r == 2 ? 1 : 2); s++) {
            char key[64], ek[96];
            snprintf(key, sizeof key, "ft-%s-%d", rules[r], s);
            int64_t id = run(db, key, "finetune", rules[r], "fmnist[5-9]", s);
            const char *et[] = {"0", "2/255", "8/255"};
            const double ev[] = {0, 2.0 / 255, 8.0 / 255};
            for (int e = 0; e < 3; e++) {
                int k_true = e == 0 ? NEX : e == 1 ? (tr8[r][s] + NEX) / 2 : tr8[r][s];
                snprintf(ek, sizeof ek, "%s/pgd/%s/true", key, et[e]);
                eval(db, id, ek, ATK_PGD, GRAD_TRUE, et[e], ev[e], k_true);
                if (r > 0) {
                    int k_fb = e == 0 ? NEX : e == 1 ? (fb8[r][s] + NEX) / 2 : fb8[r][s];
                    snprintf(ek, sizeof ek, "%s/pgd/%s/feedback", key, et[e]);
                    eval(db, id, ek, ATK_PGD, GRAD_FEEDBACK, et[e], ev[e], k_fb);
                }
            }
            snprintf(ek, sizeof ek, "%s/square", key);
            eval(db, id, ek, ATK_SQUARE, GRAD_TRUE, "8/255", 8.0 / 255, 100);
        }
    db_close(db);
}

/* the data line of series `label` in panel `title` at x (as %.9g) of a figure script: "x y lo hi" */
static int data_line(const char *gp, const char *title, const char *label, const char *x, double v[4]) {
    char head[300];
    snprintf(head, sizeof head, "# %s | %s: x y lo hi", title, label);
    const char *p = strstr(gp, head);
    if (!p) return -1;
    p = strchr(p, '\n');
    for (; p && strncmp(p + 1, "EOD", 3) != 0; p = strchr(p + 1, '\n')) {
        char xs[64];
        if (sscanf(p + 1, "%63s %lf %lf %lf", xs, &v[1], &v[2], &v[3]) == 4 && str_eq(xs, x)) {
            v[0] = atof(xs);
            return 0;
        }
    }
    return -1;
}

static void plot_fixture(const char *name, char *db, char *dir, size_t n) {
    snprintf(db, n, "%s/%s.db", test_tmpdir(), name);
    snprintf(dir, n, "%s/%s-figs", test_tmpdir(), name);
    fixture(db);
}

TEST(report_robust_eps_bands_ticks_worst) {
    char path[512], dir[512];
    plot_fixture("rep-robust", path, dir, sizeof path);
    Db *db = NULL;
    T_ASSERT(db_open_readonly(path, &db) == 0);
    if (!db) return;
    PlotOpts o = {dir, NULL, 1};
    int nfig = 0;
    T_ASSERT_MSG(plot_all(db, &o, &nfig) == 0, "plot_all: %s", err_msg());
    db_close(db);
    char gp[700];
    snprintf(gp, sizeof gp, "%s/robust_eps.gp", dir);
    char *b = t_slurp(gp, NULL);
    T_ASSERT(b != NULL);
    if (!b) return;
    T_CONTAINS(b, "robust accuracy vs eps, mean over 1-2 seeds");
    T_ASSERT(strstr(b, "± sd") == NULL && strstr(b, "errorlines") == NULL);
    /* eps tics as written, the pgd panel fitted to its grid 0..8/255, Square's to its one eps */
    T_CONTAINS(b, "set xtics (\"0\" 0, \"2/255\" 0.00784313725, \"8/255\" 0.031372549)");
    T_CONTAINS(b, "set xrange [-0.00156862745:0.0329411765]");
    T_CONTAINS(b, "set xtics (\"8/255\" 0.031372549)");
    T_CONTAINS(b, "n 200, 10 steps of 2.5*eps/10, 1 restart");
    T_CONTAINS(b, "n 200, 1000 queries");
    T_CONTAINS(b, "set title \"square (black-box)\"");
    T_CONTAINS(b, "set title \"worst case (every attack and source)\"");
    /* BP in every panel: the pre-trained model (grey, lt 8) and the fine-tuned BP, in the feedback panel through
       its true gradient */
    T_CONTAINS(b, "with linespoints lt 8 title \"bp (pretrained)\"");
    double v[4];
    T_EQ_INT(data_line(b, "pgd10 (feedback)", "bp", "0.031372549", v), 0);
    T_NEAR(v[1], 30.5, 1e-9); /* (60 + 62) / 2 of 200 */
    /* frsf, one seed: the Wilson interval of 90/200, worked out here from its closed form */
    T_EQ_INT(data_line(b, "pgd10 (true)", "frsf", "0.031372549", v), 0);
    double z = 1.959963984540054, k = 90, nn = NEX, c = (k + z * z / 2) / (nn + z * z),
           h = z / (nn + z * z) * sqrt(k * (nn - k) / nn + z * z / 4);
    T_NEAR(v[1], 45.0, 1e-9);
    T_NEAR(v[2], 100 * (c - h), 1e-6);
    T_NEAR(v[3], 100 * (c + h), 1e-6);
    /* usf, two seeds: the bootstrap band holds the mean and is wider than nothing */
    T_EQ_INT(data_line(b, "pgd10 (feedback)", "usf", "0.031372549", v), 0);
    T_NEAR(v[1], 77.5, 1e-9);
    T_ASSERT(v[2] < v[1] && v[1] < v[3] && v[3] - v[2] > 2 && v[3] - v[2] < 25);
    /* the worst case of usf at 8/255: min(true, feedback, square) = the true gradient's 60 and 62 */
    T_EQ_INT(data_line(b, "worst case (every attack and source)", "usf", "0.031372549", v), 0);
    T_NEAR(v[1], 30.5, 1e-9);
    /* the legend panel: lines with points and one band entry, never an error bar */
    const char *leg = strstr(b, "set key center center");
    T_ASSERT(leg != NULL);
    if (leg) {
        T_CONTAINS(leg, "NaN with linespoints lt 1 title \"bp\"");
        T_CONTAINS(leg, "title \"95% interval\"");
        T_ASSERT(strstr(leg, "errorbars") == NULL || strstr(leg, "errorbars") > strstr(leg, "unset multiplot"));
    }
    free(b);
}

TEST(report_verdict_figure_matches_verdict) {
    char path[512], dir[512];
    plot_fixture("rep-verdict", path, dir, sizeof path);
    Db *db = NULL;
    T_ASSERT(db_open_readonly(path, &db) == 0);
    if (!db) return;
    PlotOpts o = {dir, NULL, 1};
    T_ASSERT(plot_all(db, &o, NULL) == 0);
    VerdictSet vs;
    T_ASSERT(verdict_compute(db, &vs) == 0);
    db_close(db);
    char gp[700];
    snprintf(gp, sizeof gp, "%s/verdict.gp", dir);
    char *b = t_slurp(gp, NULL);
    T_ASSERT(b != NULL);
    if (!b) { verdict_set_free(&vs); return; }
    T_CONTAINS(b, "set title \"eps 2/255\"");
    T_CONTAINS(b, "set title \"eps 8/255\"");
    T_ASSERT(strstr(b, "set title \"eps 0\"") == NULL); /* eps 0 is clean accuracy, not a verdict panel */
    T_CONTAINS(b, "set arrow from 0, graph 0 to 0, graph 1 nohead"); /* the zero line */
    T_CONTAINS(b, "title \"worst case (every attack and source)\"");
    /* two eps panels and the legend: one row (three or more panels wrap two or three wide, not a strip) */
    T_CONTAINS(b, "set multiplot layout 1,3 ");
    /* every rule's worst-case marker is verdict_compute's delta and interval */
    int checked = 0;
    for (int i = 0; i < vs.n; i++) {
        const VerdictRow *r = &vs.rows[i];
        if (r->baseline || !r->paired || !(r->eps > 0)) continue;
        char want[200];
        snprintf(want, sizeof want, " %.6g %.6g %.6g  # %s", r->worst_d.d, r->worst_d.lo, r->worst_d.hi, r->rule);
        T_CONTAINS(b, want);
        checked++;
    }
    T_EQ_INT(checked, 4); /* usf and frsf at 2/255 and 8/255 */
    /* usf at 8/255: its feedback is far above BP, its worst case (true gradient) is not: masking */
    for (int i = 0; i < vs.n; i++)
        if (str_eq(vs.rows[i].rule, "usf") && str_eq(vs.rows[i].eps_text, "8/255")) T_CONTAINS(vs.rows[i].verdict, "masking");
    T_CONTAINS(b, "\"usf\\nmasking\"");
    verdict_set_free(&vs);
    free(b);
}

TEST(report_alignment_training_names) {
    char path[512], dir[512];
    plot_fixture("rep-align", path, dir, sizeof path);
    Db *db = NULL;
    T_ASSERT(db_open_readonly(path, &db) == 0);
    if (!db) return;
    PlotOpts o = {dir, NULL, 1};
    int n = 0;
    T_ASSERT(plot_all(db, &o, &n) == 0);
    db_close(db);
    /* one (family, model) group although pre-training and fine-tuning use different class subsets: plain names */
    T_EQ_INT(n, 4); /* verdict, robust_eps, training, alignment */
    static const char *const names[] = {"verdict", "robust_eps", "training", "alignment"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s.png", dir, names[i]);
        T_ASSERT_MSG(access(p, F_OK) == 0, "missing %s", p);
    }
    char gp[700];
    snprintf(gp, sizeof gp, "%s/alignment.gp", dir);
    char *b = t_slurp(gp, NULL);
    T_ASSERT(b != NULL);
    if (b) {
        T_CONTAINS(b, "set title \"fc1: angle(B, W)\"");
        T_CONTAINS(b, "set title \"fc1: angle(delta, BP delta)\"");
        T_CONTAINS(b, "set title \"fc3: angle(B, W)\"");
        T_ASSERT(strstr(b, "set title \"fc3: angle(delta, BP delta)\"") == NULL); /* 0 throughout: named, not drawn */
        T_CONTAINS(b, "not drawn: fc3: angle(delta, BP delta)");
        T_ASSERT(strstr(b, "title \"bp\"") == NULL); /* BP is 0 by definition */
        T_CONTAINS(b, "set key center center"); /* the legend is its own panel */
    }
    free(b);
    snprintf(gp, sizeof gp, "%s/training.gp", dir);
    b = t_slurp(gp, NULL);
    T_ASSERT(b != NULL);
    if (b) {
        T_CONTAINS(b, "set title \"pre-training: training accuracy\"");
        T_CONTAINS(b, "set title \"fine-tuning: validation accuracy\"");
        /* y fitted to the data (85..90 % training accuracy), not 0..100 */
        T_CONTAINS(b, "set yrange [84.6:90.4]");
    }
    free(b);
}

/* Transfer: a heatmap (surrogate rule x attacked rule) with two or more surrogates; with one, no heatmap (the
 * report's transfer table holds it). bp, usf and frsf fine-tuned; PGD at 8/255 crafted on bp's model, and in the
 * second database also on usf's. */
TEST(report_transfer_heatmap_only_with_two_surrogates) {
    for (int two = 0; two <= 1; two++) {
        char path[512], dir[512], gp[600], cmd[1400], out[8192];
        snprintf(path, sizeof path, "%s/rep-transfer%d.db", test_tmpdir(), two);
        snprintf(dir, sizeof dir, "%s/rep-transfer%d-figs", test_tmpdir(), two);
        unlink(path);
        Db *db = NULL;
        T_ASSERT(db_open(path, &db) == 0);
        if (!db) return;
        const char *rules[] = {"bp", "usf", "frsf"};
        int64_t id[3];
        for (int r = 0; r < 3; r++) {
            char key[64];
            snprintf(key, sizeof key, "ft-%s", rules[r]);
            id[r] = run(db, key, "finetune", rules[r], "fmnist[5-9]", 0);
        }
        for (int r = 0; r < 3; r++)
            for (int s = 0; s <= two; s++) {
                if (r == s) continue; /* a model is not its own surrogate */
                char ek[96];
                snprintf(ek, sizeof ek, "ft-%s/pgd/8/transfer-%s", rules[r], rules[s]);
                eval_from(db, id[r], ek, ATK_PGD, GRAD_TRANSFER, id[s], "8/255", 8.0 / 255, 100 + 20 * r + 10 * s);
            }
        db_close(db);
        snprintf(cmd, sizeof cmd, "%s plot --db %s --out %s", test_exe(), path, dir);
        T_EQ_INT(test_run(cmd, out, sizeof out), 0);
        snprintf(gp, sizeof gp, "%s/transfer.gp", dir);
        char *b = t_slurp(gp, NULL);
        if (!two) {
            T_ASSERT_MSG(b == NULL, "one surrogate drew a transfer heatmap");
            T_CONTAINS(out, "one transfer surrogate (bp)");
        } else {
            T_ASSERT_MSG(b != NULL, "two surrogates drew no transfer heatmap: %s", out);
            if (b) {
                T_CONTAINS(b, "set ytics (\"bp\" 0, \"usf\" 1)");
                T_CONTAINS(b, "set xtics (\"bp\" 0, \"usf\" 1, \"frsf\" 2)");
                T_CONTAINS(b, "set title \"pgd10, eps 8/255\"");
                /* one panel: the figure is as wide as its title (at least 6 px a character at 10 pt), not clipped */
                int w = 0;
                const char *sz = strstr(b, "pngcairo noenhanced size ");
                const char *t = strstr(b, "set multiplot layout 1,1 title \"");
                T_ASSERT(sz && sscanf(sz, "pngcairo noenhanced size %d,", &w) == 1 && t);
                if (t) {
                    t += strlen("set multiplot layout 1,1 title \"");
                    int len = (int)(strchr(t, '"') - t);
                    T_ASSERT_MSG(len > 60 && w >= 6 * len, "transfer figure %d px wide for a %d-character title", w, len);
                }
            }
        }
        free(b);
    }
}

/* ---- the HTML report in a real browser ---- */

/* What the page check found: images that decoded (naturalWidth > 0) and errors seen by the page. */
typedef struct PageCheck { int images, decoded, errors, console_errors, ran; } PageCheck;

static const char k_probe[] =
    "<script>window.__e=0;window.addEventListener('error',function(){window.__e++},true);"
    "window.addEventListener('load',function(){var n=0,d=0;document.querySelectorAll('img').forEach(function(i){n++;"
    "if(i.complete&&i.naturalWidth>0)d++});var p=document.createElement('pre');p.id='concord-check';"
    "p.textContent='CHECK images='+n+' decoded='+d+' errors='+window.__e;document.body.appendChild(p)});</script>";

static const char *k_chromium_flags =
    "--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking --disable-component-update "
    "--disable-sync --host-resolver-rules='MAP * ~NOTFOUND' --enable-logging=stderr --v=0";

/* Opens html (a file) with the probe injected after <head>, in headless Chromium; fills pc. */
static void chromium_check(const char *html, const char *tag, PageCheck *pc) {
    memset(pc, 0, sizeof *pc);
    char *b = t_slurp(html, NULL);
    if (!b) return;
    char probe_path[700], dom[700], log[700], prof[700], cmd[4000];
    snprintf(probe_path, sizeof probe_path, "%s/%s-probe.html", test_tmpdir(), tag);
    snprintf(dom, sizeof dom, "%s/%s-dom.txt", test_tmpdir(), tag);
    snprintf(log, sizeof log, "%s/%s-chromium.log", test_tmpdir(), tag);
    snprintf(prof, sizeof prof, "%s/%s-profile", test_tmpdir(), tag);
    FILE *f = fopen(probe_path, "w");
    const char *h = strstr(b, "<head>");
    if (f && h) {
        fwrite(b, 1, (size_t)(h - b) + 6, f);
        fputs(k_probe, f);
        fputs(h + 6, f);
    }
    if (f) fclose(f);
    free(b);
    snprintf(cmd, sizeof cmd, "(timeout 120 chromium %s --user-data-dir=%s --virtual-time-budget=10000 --dump-dom 'file://%s' > %s 2> %s)",
             k_chromium_flags, prof, probe_path, dom, log);
    test_run(cmd, NULL, 0);
    char *d = t_slurp(dom, NULL), *l = t_slurp(log, NULL);
    const char *c = d ? strstr(d, "id=\"concord-check\">CHECK images=") : NULL;
    if (c && sscanf(c, "id=\"concord-check\">CHECK images=%d decoded=%d errors=%d", &pc->images, &pc->decoded, &pc->errors) == 3) pc->ran = 1;
    /* console errors: Chromium logs them as "CONSOLE(...)" lines; an uncaught error says "Uncaught" */
    for (const char *p = l; p && (p = strstr(p, ":CONSOLE")); p++) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char line[600];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line - 1 ? len : sizeof line - 1), p);
        if (strstr(line, "ERROR") || strstr(line, "Uncaught") || strstr(line, "Failed")) pc->console_errors++;
    }
    free(d);
    free(l);
}

static void page_assert_ok(const PageCheck *pc, int want_images) {
    T_ASSERT_MSG(pc->ran, "the page check did not run (no CHECK line in Chromium's DOM)");
    T_EQ_INT(pc->images, want_images);
    T_EQ_INT(pc->decoded, pc->images);
    T_EQ_INT(pc->errors, 0);
    T_EQ_INT(pc->console_errors, 0);
}

static PageCheck g_canary_pc;
static void canary_page(void) { page_assert_ok(&g_canary_pc, 1); }

TEST(report_html_in_chromium) {
    if (test_run("command -v chromium", NULL, 0) != 0) test_run("sh scripts/deps.sh browser", NULL, 0);
    if (test_run("command -v chromium", NULL, 0) != 0) {
        test_skip("report_html_in_chromium: chromium is not installed and `sh scripts/deps.sh browser` (apt-get) could not install it");
        return;
    }
    char path[512], dir[512], html[600], cmd[4000], out[4096];
    plot_fixture("rep-html", path, dir, sizeof path);
    snprintf(html, sizeof html, "%s/report.html", test_tmpdir());
    /* no --out: the figures are drawn in a temporary directory and embedded */
    snprintf(cmd, sizeof cmd, "%s plot --db %s --report %s", test_exe(), path, html);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "report: ");
    char *b = t_slurp(html, NULL);
    T_ASSERT(b != NULL);
    if (!b) return;
    /* self-contained: no script, nothing fetched from anywhere */
    T_ASSERT(strstr(b, "<script") == NULL);
    T_ASSERT(strstr(b, "http://") == NULL && strstr(b, "https://") == NULL && strstr(b, "src=\"file:") == NULL);
    int imgs = 0;
    for (const char *p = b; (p = strstr(p, "<img ")); p++) imgs++;
    int data_imgs = 0;
    for (const char *p = b; (p = strstr(p, "src=\"data:image/png;base64,")); p++) data_imgs++;
    T_EQ_INT(imgs, 4); /* verdict, robust_eps, training, alignment */
    T_EQ_INT(data_imgs, imgs);
    /* the verdict first, then the methods; masking highlighted; every table of the report */
    const char *v = strstr(b, "<h2>Verdict"), *m = strstr(b, "<h2>Methods"), *t = strstr(b, "<h2>Clean and robust");
    T_ASSERT(v && m && t && v < m && m < t);
    T_CONTAINS(b, "<td class=\"mask\">masking</td>");
    T_CONTAINS(b, "<h2>Gradient masking");
    T_CONTAINS(b, "<th>verdict</th>");
    T_CONTAINS(b, "square");
    T_CONTAINS(b, "black-box");
    free(b);
    /* the canary: a page with an image that cannot decode must fail the same check */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/broken.html", test_tmpdir());
    FILE *f = fopen(bad, "w");
    if (f) {
        fputs("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><img src=\"data:image/png;base64,iVBORw0KGgoAAAA\">"
              "</body></html>\n", f);
        fclose(f);
    }
    chromium_check(bad, "broken", &g_canary_pc);
    T_ASSERT_MSG(g_canary_pc.ran, "canary: the page check did not run on the broken page");
    T_ASSERT_MSG(test_expect_failure(canary_page), "canary: a page whose image does not decode passed the check");
    /* the report itself */
    PageCheck pc;
    chromium_check(html, "report", &pc);
    page_assert_ok(&pc, imgs);
    /* and a screenshot of the page as a reader sees it */
    char shot[600], prof[600];
    snprintf(shot, sizeof shot, "%s/report-screenshot.png", test_tmpdir());
    snprintf(prof, sizeof prof, "%s/shot-profile", test_tmpdir());
    snprintf(cmd, sizeof cmd, "timeout 120 chromium %s --user-data-dir=%s --window-size=1400,3000 --screenshot=%s 'file://%s' >/dev/null 2>&1",
             k_chromium_flags, prof, shot, html);
    test_run(cmd, NULL, 0);
    struct stat st;
    T_ASSERT_MSG(stat(shot, &st) == 0 && st.st_size > 20000, "no screenshot (or an empty one) at %s", shot);
    const char *keep = getenv("CONCORD_REPORT_SCREENSHOT");
    if (keep && *keep) {
        snprintf(cmd, sizeof cmd, "cp %s '%s'", shot, keep);
        test_run(cmd, NULL, 0);
    }
}
