/* plot.c -- gnuplot figures (see plot.h).
 *
 * Each figure is built as text: a header fixing the rule styles, the data as inline datablocks, then one
 * loop that renders the same multiplot to PNG and to PDF. The script is written next to the images and
 * gnuplot is run on that very file (cwd = the output directory, outbase set to a temporary name with -e),
 * so the shipped .gp is exactly what produced the images.
 *
 * Line figures go through one model: a figure is panels, a panel is series (one per rule), a series is
 * points (x, y, and a band lo..hi, NaN = none). Every line figure ends with a legend panel of its own, so
 * no key ever covers data and no key shows an error-bar glyph.
 */
#define _POSIX_C_SOURCE 200809L
#include "results/plot.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/core.h"
#include "results/outcomes.h"
#include "results/stats.h"
#include "results/verdict.h"
#include "results/worst.h"

/* ---- rule styles: Okabe & Ito (2008) colour-blind-safe palette, one colour + dash per rule ---- */

typedef struct RuleStyle { const char *rule, *color, *dash; int point; } RuleStyle;
static const RuleStyle k_styles[] = {
    {"bp", "#000000", "1", 7},  {"fa", "#E69F00", "2", 5},   {"dfa", "#56B4E9", "3", 9},
    {"usf", "#009E73", "4", 11}, {"brsf", "#0072B2", "5", 13}, {"frsf", "#D55E00", "(10,4,3,4,3,4)", 4},
    {"other", "#CC79A7", "(2,2)", 6}, {"pretrained", "#888888", "(6,3)", 6},
};
#define LT_OTHER 7
#define LT_PRETRAINED 8

int plot_rule_linetype(const char *rule) {
    for (int i = 0; i < LT_OTHER - 1; i++)
        if (str_eq(rule, k_styles[i].rule)) return i + 1;
    return LT_OTHER;
}

/* the gradient sources of the verdict figure: a colour and a point type each (not a rule's) */
typedef struct SrcStyle { const char *prefix, *color; int point; } SrcStyle;
static const SrcStyle k_src_styles[] = {
    {"true", "#000000", 7}, {"feedback", "#E69F00", 9}, {"transfer", "#0072B2", 5}, {"black-box", "#009E73", 13},
    {"", "#CC79A7", 11},
};

/* ---- small helpers ---- */

/* A gnuplot double-quoted string literal; a newline becomes gnuplot's \n (a line break in titles). */
static void gp_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '\n') { fputs("\\n", f); continue; }
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* A file-name-safe copy: runs of other characters become one '_' ("a / b" -> "a_b"). */
static void sanitize(const char *in, char *out, size_t n) {
    size_t k = 0;
    for (; *in && k + 1 < n; in++) {
        int ok = isalnum((unsigned char)*in) || *in == '.' || *in == '-';
        if (ok) out[k++] = *in;
        else if (k == 0 || out[k - 1] != '_') out[k++] = '_';
    }
    while (k > 0 && out[k - 1] == '_') k--;
    out[k] = 0;
}

/* The dataset family: the name without its class subset ("fashion-mnist[5-9]" -> "fashion-mnist"), so a
 * model pre-trained on some classes and fine-tuned on others is one group. */
static void family(const char *dataset, char *out, size_t n) {
    const char *b = strchr(dataset, '[');
    snprintf(out, n, "%.*s", b ? (int)(b - dataset) : (int)strlen(dataset), dataset);
}

static const char *txt(sqlite3_stmt *st, int i) {
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

static int rule_rank(const char *r) { return plot_rule_linetype(r) - 1; }

/* Resolves the gnuplot executable into out; -1 with the one-line install hint when there is none. */
static int gnuplot_find(const char *want, char *out, size_t n) {
    if (!want) {
        const char *e = getenv("CONCORD_GNUPLOT");
        want = e && *e ? e : "gnuplot";
    }
    if (strchr(want, '/')) {
        if (access(want, X_OK) == 0) { snprintf(out, n, "%s", want); return 0; }
        return err_set("gnuplot not found at %s; install gnuplot-nox (scripts/deps.sh does)", want);
    }
    const char *path = getenv("PATH");
    if (path) {
        char dirs[4096];
        snprintf(dirs, sizeof dirs, "%s", path);
        for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            snprintf(out, n, "%s/%s", *d ? d : ".", want);
            if (access(out, X_OK) == 0) return 0;
        }
    }
    return err_set("gnuplot not found; install gnuplot-nox (scripts/deps.sh does)");
}

/* Runs `gp -e "outbase='tmpbase'" script` in dir; gnuplot's messages end up in the error on failure. */
static int gnuplot_run(const char *gp, const char *dir, const char *script, const char *tmpbase) {
    int pfd[2];
    if (pipe(pfd) != 0) return err_set("plot: cannot create a pipe: %s", strerror(errno));
    char setvar[600];
    snprintf(setvar, sizeof setvar, "outbase='%s'", tmpbase);
    pid_t pid = fork();
    if (pid < 0) { close(pfd[0]); close(pfd[1]); return err_set("plot: cannot fork gnuplot: %s", strerror(errno)); }
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        if (chdir(dir) != 0) _exit(126);
        execl(gp, gp, "-e", setvar, script, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char msg[2048];
    size_t k = 0;
    ssize_t r;
    char buf[1024];
    while ((r = read(pfd[0], buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < r && k + 1 < sizeof msg; i++) msg[k++] = buf[i] == '\n' ? ' ' : buf[i];
    msg[k] = 0;
    close(pfd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return err_set("%s/%s: gnuplot failed (status %d): %.400s", dir, script, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                       k ? msg : "no message");
    return 0;
}

/* ---- a figure under construction ---- */

typedef struct Fig {
    char name[256];    /* file base name */
    int rows, cols, width, height, title_lines;
    FILE *data, *body; /* datablocks, and the plot commands run once per terminal */
    char *data_s, *body_s;
    size_t data_n, body_n;
    int nblocks;
} Fig;

/* npanels laid out max_cols wide, each pw x ph pixels, under a title of title_lines lines. */
static void fig_begin(Fig *f, const char *name, int npanels, int max_cols, int pw, int ph, int title_lines) {
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->cols = npanels < max_cols ? npanels : max_cols;
    if (f->cols < 1) f->cols = 1;
    f->rows = (npanels + f->cols - 1) / f->cols;
    if (f->rows < 1) f->rows = 1;
    f->title_lines = title_lines;
    f->width = pw * f->cols;
    f->height = ph * f->rows + 22 * title_lines + 12;
    f->data = open_memstream(&f->data_s, &f->data_n);
    f->body = open_memstream(&f->body_s, &f->body_n);
    CHECK(f->data && f->body);
}

/* Starts a new datablock; returns its number (the caller writes lines to f->data, then fig_block_end). */
static int fig_block(Fig *f) {
    fprintf(f->data, "$d%d << EOD\n", ++f->nblocks);
    return f->nblocks;
}
static void fig_block_end(Fig *f) { fputs("EOD\n", f->data); }

typedef struct Figs {
    const PlotOpts *o;
    Db *db;
    char gp[1024];
    int drawn;
    int multi;        /* several (dataset family, model) groups: every file name gets "-GROUP" */
} Figs;

/* The file name of figure `base` for group g ("fashion-mnist / lenet5"): one scheme for the whole call. */
static void fig_name(const Figs *fs, const char *base, const char *g, char *out, size_t n) {
    char gs[200];
    sanitize(g, gs, sizeof gs);
    if (fs->multi) snprintf(out, n, "%s-%s", base, gs);
    else snprintf(out, n, "%s", base);
}

/* Writes NAME.gp, runs gnuplot on it and renames the images into place. */
static int fig_finish(Figs *fs, Fig *f, const char *title) {
    fclose(f->data);
    fclose(f->body);
    /* wide enough for the title's longest line (about 7 px a character at the title's 10 pt): a one-panel
     * figure would otherwise clip it */
    int line = 0, longest = 0;
    for (const char *c = title; *c; c++) {
        if (*c == '\n') line = 0;
        else if (((unsigned char)*c & 0xC0) != 0x80 && ++line > longest) longest = line;
    }
    if (f->width < 7 * longest + 40) f->width = 7 * longest + 40;
    const char *dir = fs->o->out_dir;
    char path[1400], tmp[1500];
    snprintf(path, sizeof path, "%s/%s.gp", dir, f->name);
    tmp_path(path, tmp, sizeof tmp);
    FILE *g = fopen(tmp, "w");
    int rc = 0;
    if (!g) { rc = err_set("%s: cannot write: %s", tmp, strerror(errno)); goto done; }
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    fprintf(g, "# %s.gp -- written by `concord plot` from %s on %s.\n", f->name, db_path(fs->db), when);
    fprintf(g, "# Self-contained: `gnuplot %s.gp` in this directory re-renders %s.png and %s.pdf.\n", f->name,
            f->name, f->name);
    fprintf(g, "if (!exists(\"outbase\")) outbase = \"%s\"\n", f->name);
    fputs("# one colour (Okabe-Ito) and dash per rule, the same in every figure; 8: a pre-trained baseline\n", g);
    for (size_t i = 0; i < ARRAY_LEN(k_styles); i++)
        fprintf(g, "set linetype %zu lc rgb \"%s\" dt %s pt %d ps 0.8 lw 2  # %s\n", i + 1, k_styles[i].color,
                k_styles[i].dash, k_styles[i].point, k_styles[i].rule);
    fputs("# the gradient sources of the verdict figure\n", g);
    for (size_t i = 0; i < ARRAY_LEN(k_src_styles); i++)
        fprintf(g, "set linetype %zu lc rgb \"%s\" dt 1 pt %d ps 1.3 lw 1.5  # %s\n", 11 + i, k_src_styles[i].color,
                k_src_styles[i].point, k_src_styles[i].prefix[0] ? k_src_styles[i].prefix : "other");
    fputs("set linetype 16 lc rgb \"#CC0000\" dt 1 pt 3 ps 1.8 lw 2  # worst case\n", g);
    fputs("set key noenhanced\nset termoption noenhanced\n\n", g);
    fwrite(f->data_s, 1, f->data_n, g);
    fprintf(g, "\ndo for [fmt in \"png pdf\"] {\n"
               "  if (fmt eq \"png\") {\n"
               "    set terminal pngcairo noenhanced size %d,%d font \"sans,9\"\n"
               "  } else {\n"
               "    set terminal pdfcairo noenhanced size %.2fin,%.2fin font \"sans,7\"\n"
               "  }\n"
               "  set output outbase.\".\".fmt\n"
               "  set multiplot layout %d,%d title ",
            f->width, f->height, f->width / 100.0, f->height / 100.0, f->rows, f->cols);
    gp_str(g, title);
    fputs(" font \",10\"\n", g);
    fwrite(f->body_s, 1, f->body_n, g);
    fputs("  unset multiplot\n  set output\n}\n", g);
    if (fclose(g) != 0) { rc = err_set("%s: write failed (disk full?)", tmp); goto done; }
    if ((rc = file_commit(tmp, path)) < 0) goto done;
    char script[300], tmpbase[300];
    snprintf(script, sizeof script, "%s.gp", f->name);
    snprintf(tmpbase, sizeof tmpbase, "%s.tmp.%ld", f->name, (long)getpid());
    if ((rc = gnuplot_run(fs->gp, dir, script, tmpbase)) < 0) goto done;
    static const char *const ext[] = {"png", "pdf"};
    for (size_t i = 0; i < ARRAY_LEN(ext); i++) {
        char from[1400], to[1400];
        snprintf(from, sizeof from, "%s/%s.%s", dir, tmpbase, ext[i]);
        snprintf(to, sizeof to, "%s/%s.%s", dir, f->name, ext[i]);
        if ((rc = file_commit(from, to)) < 0) goto done;
        if (!fs->o->quiet) fprintf(stderr, "plot: wrote %s\n", to);
    }
    fs->drawn++;
done:
    free(f->data_s);
    free(f->body_s);
    return rc;
}

/* A panel's common settings, so nothing leaks from the panel before (or the legend panel). */
static void panel_reset(FILE *b) {
    fputs("  set border 3\n  set tics nomirror\n  set tics\n  set grid lc rgb \"#dddddd\"\n  unset key\n  unset arrow\n"
          "  unset label\n  set xtics autofreq\n  set ytics autofreq\n  set format x \"%g\"\n  set format y \"%g\"\n"
          "  set xtics norotate\n", b);
}

/* ---- line figures: panels of series of (x, y, band lo..hi) ---- */

typedef struct SPt { double x, y, lo, hi; } SPt;
typedef struct Ser { char label[80]; int lt; SPt *v; int n, cap; } Ser;
typedef struct Tick { double x; char label[32]; } Tick;
typedef struct Pan {
    char title[200], xlabel[400], ylabel[64];
    double ylo, yhi;            /* y range; ylo > yhi: fitted to the data of the panels sharing `yshare` */
    int yshare;                 /* panels with the same value share one fitted range */
    int int_x;                  /* integer x (epochs) */
    Tick ticks[32];             /* explicit x tics (the eps grid) when nticks > 0 */
    int nticks;
    Ser *s;
    int ns, cap;
} Pan;
typedef struct Pans { Pan *p; int n, cap; } Pans;

static Pan *pans_add(Pans *ps, const char *title) {
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 8;
        ps->p = realloc(ps->p, sizeof *ps->p * (size_t)ps->cap);
        CHECK(ps->p);
    }
    Pan *p = &ps->p[ps->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->title, sizeof p->title, "%s", title);
    p->yshare = ps->n; /* its own fitted range unless the figure says otherwise */
    p->ylo = 1;
    p->yhi = 0;
    return p;
}
static Ser *pan_series(Pan *p, const char *label, int lt) {
    for (int i = 0; i < p->ns; i++)
        if (str_eq(p->s[i].label, label)) return &p->s[i];
    if (p->ns == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 8;
        p->s = realloc(p->s, sizeof *p->s * (size_t)p->cap);
        CHECK(p->s);
    }
    Ser *s = &p->s[p->ns++];
    memset(s, 0, sizeof *s);
    snprintf(s->label, sizeof s->label, "%s", label);
    s->lt = lt;
    return s;
}
static void ser_add(Ser *s, double x, double y, double lo, double hi) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = realloc(s->v, sizeof *s->v * (size_t)s->cap);
        CHECK(s->v);
    }
    s->v[s->n++] = (SPt){x, y, lo, hi};
}
static void pan_tick(Pan *p, double x, const char *label) {
    for (int i = 0; i < p->nticks; i++)
        if (p->ticks[i].x == x) return;
    if (p->nticks < (int)ARRAY_LEN(p->ticks)) {
        p->ticks[p->nticks].x = x;
        snprintf(p->ticks[p->nticks].label, sizeof p->ticks[0].label, "%s", label);
        p->nticks++;
    }
}
static void pans_free(Pans *ps) {
    for (int i = 0; i < ps->n; i++) {
        for (int k = 0; k < ps->p[i].ns; k++) free(ps->p[i].s[k].v);
        free(ps->p[i].s);
    }
    free(ps->p);
    memset(ps, 0, sizeof *ps);
}

static int ser_cmp(const void *a, const void *b) {
    const Ser *x = a, *y = b;
    if (x->lt != y->lt) return x->lt - y->lt;
    return strcmp(x->label, y->label);
}
static int spt_cmp(const void *a, const void *b) {
    const SPt *x = a, *y = b;
    return x->x < y->x ? -1 : x->x > y->x;
}

/* The legend panel: every series label once (first seen order sorted by style), plus the band's meaning. */
static void legend_panel(Fig *f, const Pans *ps, const char *band) {
    Ser seen[64];
    int n = 0, any_band = 0;
    for (int i = 0; i < ps->n; i++)
        for (int k = 0; k < ps->p[i].ns; k++) {
            const Ser *s = &ps->p[i].s[k];
            for (int j = 0; j < s->n; j++) any_band |= isfinite(s->v[j].lo) && isfinite(s->v[j].hi);
            int dup = 0;
            for (int j = 0; j < n && !dup; j++) dup = str_eq(seen[j].label, s->label);
            if (!dup && n < (int)ARRAY_LEN(seen)) seen[n++] = *s;
        }
    qsort(seen, (size_t)n, sizeof *seen, ser_cmp);
    fputs("  unset title\n  unset xlabel\n  unset ylabel\n  unset border\n  unset tics\n  unset grid\n  unset arrow\n"
          "  set xrange [0:1]\n  set yrange [0:1]\n  set key center center vertical Left reverse box opaque samplen 4 spacing 1.3\n"
          "  plot ", f->body);
    for (int i = 0; i < n; i++) {
        fprintf(f->body, "%sNaN with linespoints lt %d title ", i ? ", \\\n       " : "", seen[i].lt);
        gp_str(f->body, seen[i].label);
    }
    if (any_band && band) {
        fprintf(f->body, "%sNaN with filledcurves fs transparent solid 0.25 noborder lc rgb \"#777777\" title ", n ? ", \\\n       " : "");
        gp_str(f->body, band);
    }
    fputs("\n", f->body);
}

/* Draws panels ps as figure `name` (title may hold '\n'), with a legend panel at the end; band: what the
 * shaded band means (NULL = no bands drawn). */
static int line_figure(Figs *fs, const char *name, const char *title, Pans *ps, const char *band, int max_cols) {
    /* shared fitted y ranges */
    for (int i = 0; i < ps->n; i++) {
        Pan *p = &ps->p[i];
        for (int k = 0; k < p->ns; k++) {
            qsort(p->s[k].v, (size_t)p->s[k].n, sizeof(SPt), spt_cmp);
        }
        qsort(p->s, (size_t)p->ns, sizeof *p->s, ser_cmp);
    }
    int title_lines = 1;
    for (const char *c = title; *c; c++) title_lines += *c == '\n';
    Fig f;
    /* the legend takes one more slot: max_cols columns, or one more when that saves a row */
    int slots = ps->n + 1, cols = slots < max_cols ? slots : max_cols;
    if (max_cols > 0 && slots > max_cols && (slots + max_cols) / (max_cols + 1) < (slots + max_cols - 1) / max_cols) cols = max_cols + 1;
    if (max_cols < 0) cols = -max_cols; /* fixed */
    fig_begin(&f, name, slots, cols, 430, 330, title_lines);
    for (int i = 0; i < ps->n; i++) {
        Pan *p = &ps->p[i];
        double ylo = p->ylo, yhi = p->yhi;
        if (ylo > yhi) { /* fitted: over every panel sharing this range */
            double lo = INFINITY, hi = -INFINITY;
            for (int j = 0; j < ps->n; j++) {
                const Pan *q = &ps->p[j];
                if (q->ylo <= q->yhi || q->yshare != p->yshare) continue;
                for (int k = 0; k < q->ns; k++)
                    for (int m = 0; m < q->s[k].n; m++) {
                        const SPt *t = &q->s[k].v[m];
                        double a = isfinite(t->lo) ? fmin(t->lo, t->y) : t->y, b = isfinite(t->hi) ? fmax(t->hi, t->y) : t->y;
                        if (a < lo) lo = a;
                        if (b > hi) hi = b;
                    }
            }
            if (!(lo <= hi)) { lo = 0; hi = 1; }
            double pad = hi > lo ? 0.08 * (hi - lo) : (fabs(hi) > 0 ? 0.1 * fabs(hi) : 1);
            ylo = lo - pad;
            yhi = hi + pad;
        }
        double xlo = INFINITY, xhi = -INFINITY;
        for (int k = 0; k < p->ns; k++)
            for (int m = 0; m < p->s[k].n; m++) {
                if (p->s[k].v[m].x < xlo) xlo = p->s[k].v[m].x;
                if (p->s[k].v[m].x > xhi) xhi = p->s[k].v[m].x;
            }
        for (int t = 0; t < p->nticks; t++) {
            if (p->ticks[t].x < xlo) xlo = p->ticks[t].x;
            if (p->ticks[t].x > xhi) xhi = p->ticks[t].x;
        }
        if (!(xlo <= xhi)) { xlo = 0; xhi = 1; }
        double xpad = xhi > xlo ? 0.05 * (xhi - xlo) : (xlo != 0 ? 0.1 * fabs(xlo) : 0.5);
        /* every series a single point at one x (one eps): spread the series sideways so none hides another */
        int onex = p->ns > 1 && xlo == xhi;
        for (int k = 0; k < p->ns && onex; k++) onex = p->s[k].n == 1;
        if (onex) {
            double w = xlo != 0 ? 0.06 * fabs(xlo) : 0.06;
            for (int k = 0; k < p->ns; k++) p->s[k].v[0].x += w * (k - (p->ns - 1) / 2.0) / (p->ns > 1 ? (p->ns - 1) / 2.0 : 1);
            xpad = 2 * w;
        }
        panel_reset(f.body);
        fputs("  set title ", f.body);
        gp_str(f.body, p->title);
        fputs("\n  set xlabel ", f.body);
        gp_str(f.body, p->xlabel);
        fputs("\n  set ylabel ", f.body);
        gp_str(f.body, p->ylabel);
        fprintf(f.body, "\n  set xrange [%.9g:%.9g]\n  set yrange [%.9g:%.9g]\n", xlo - xpad, xhi + xpad, ylo, yhi);
        if (p->ylo <= p->yhi && p->ylo < 0 && p->yhi > 100) fputs("  set ytics 0, 20, 100\n", f.body);
        if (p->nticks) {
            fputs("  set xtics (", f.body);
            int longest = 0;
            for (int t = 0; t < p->nticks; t++) {
                fprintf(f.body, "%s", t ? ", " : "");
                gp_str(f.body, p->ticks[t].label);
                fprintf(f.body, " %.9g", p->ticks[t].x);
                int l = (int)strlen(p->ticks[t].label);
                if (l > longest) longest = l;
            }
            fputs(")\n", f.body);
            if (p->nticks * (longest + 1) > 34) fputs("  set xtics rotate by -40\n", f.body);
        } else if (p->int_x) {
            fprintf(f.body, "  set xtics %d\n", xhi - xlo > 10 ? (int)ceil((xhi - xlo) / 10) : 1);
        }
        fputs("  plot ", f.body);
        int first = 1;
        for (int k = 0; k < p->ns; k++) {
            const Ser *s = &p->s[k];
            int b = fig_block(&f), has_band = 0;
            fprintf(f.data, "# %s | %s: x y lo hi%s\n", p->title, s->label, onex ? " (x spread sideways around the one eps)" : "");
            for (int m = 0; m < s->n; m++) {
                const SPt *t = &s->v[m];
                has_band |= isfinite(t->lo) && isfinite(t->hi);
                fprintf(f.data, "%.9g %.9g ", t->x, t->y);
                if (isfinite(t->lo) && isfinite(t->hi)) fprintf(f.data, "%.9g %.9g\n", t->lo, t->hi);
                else fputs("NaN NaN\n", f.data);
            }
            fig_block_end(&f);
            if (has_band && band) { /* a band, or an interval bar where the series is a single point */
                if (s->n > 1)
                    fprintf(f.body, "%s$d%d using 1:3:4 with filledcurves fs transparent solid 0.15 noborder lt %d notitle",
                            first ? "" : ", \\\n       ", b, s->lt);
                else
                    fprintf(f.body, "%s$d%d using 1:2:3:4 with yerrorbars lt %d dt 1 ps 0 notitle", first ? "" : ", \\\n       ", b, s->lt);
                first = 0;
            }
            fprintf(f.body, "%s$d%d using 1:2 with linespoints lt %d title ", first ? "" : ", \\\n       ", b, s->lt);
            gp_str(f.body, s->label);
            first = 0;
        }
        if (first) fputs("NaN notitle", f.body);
        fputs("\n", f.body);
    }
    legend_panel(&f, ps, band);
    return fig_finish(fs, &f, title);
}

/* ---- shared SQL ---- */

#define RULE_ORDER "CASE rule WHEN 'bp' THEN 0 WHEN 'fa' THEN 1 WHEN 'dfa' THEN 2 WHEN 'usf' THEN 3" \
                   " WHEN 'brsf' THEN 4 WHEN 'frsf' THEN 5 ELSE 6 END, rule"
/* a run's kind, with hashing runs kept apart from classification ones: "finetune (hash)" */
#define KIND_TASK "(r.kind || CASE WHEN r.task = 'hash' THEN ' (hash)' ELSE '' END)"

/* One evaluation per trained model and (attack, source, eps, norm): the latest on the largest example
 * set (as the reports count it). AutoAttack's component rows (the ensemble after each component, keyed
 * ".../autoattack.<component>/...") are left out: the AutoAttack row is the evaluation. */
#define ONE_PER_MODEL_CLASSIFY \
    "(SELECT * FROM (SELECT v.*, row_number() OVER (PARTITION BY coalesce(v.run_id, v.target_ckpt), v.attack_label," \
    " v.source_label, v.eps_text, v.norm ORDER BY v.n DESC, v.eval_id DESC) AS one FROM eval_view v" \
    " WHERE v.task = 'classify' AND coalesce(v.job_key, '') NOT LIKE '%/autoattack.%'" \
    " AND coalesce(v.job_key, '') NOT LIKE '%/autoattack-l2.%' AND coalesce(v.job_key, '') NOT LIKE '%/autoattack-rand.%'" \
    " AND coalesce(v.job_key, '') NOT LIKE '%/autoattack-rand-l2.%') WHERE one = 1)"

/* The "(family, model)" groups of this database: figures are named by them when there are several. */
static int count_groups(Db *db) {
    static const char sql[] = "SELECT DISTINCT dataset, model FROM runs UNION SELECT DISTINCT dataset, model FROM eval_view";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK) return 0;
    char seen[64][200];
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char fam[128], g[200];
        family(txt(st, 0), fam, sizeof fam);
        snprintf(g, sizeof g, "%s / %s", fam, txt(st, 1));
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = str_eq(seen[i], g);
        if (!dup && n < 64) snprintf(seen[n++], sizeof seen[0], "%s", g);
    }
    sqlite3_finalize(st);
    return n;
}

/* ---- robust accuracy vs eps ---- */

/* One evaluation of one model, as the figure needs it. */
typedef struct REv {
    char group[200], panel[160], series[80], eps_text[32], norm[8], attack[32], source[64];
    int lt, prank;             /* style; panel order */
    double eps;
    long n, robust;
    long steps, restarts, queries, eot;
    char alpha_text[32];
    int has;                   /* per-example outcomes present */
    int32_t *index;            /* (n) */
    uint8_t *robust_ok;        /* (n) */
} REv;

static void rev_free(REv *v, int n) {
    for (int i = 0; i < n; i++) { free(v[i].index); free(v[i].robust_ok); }
    free(v);
}

static int src_rank(const char *s) {
    return str_eq(s, "true") ? 0 : strncmp(s, "feedback", 8) == 0 ? 1 : strncmp(s, "transfer", 8) == 0 ? 2 : 3;
}
static int attack_rank(const char *a) {
    return strncmp(a, "fgsm", 4) == 0 ? 0 : strncmp(a, "pgd", 3) == 0 ? 1 : strncmp(a, "autoattack", 10) == 0 ? 2 : 3;
}

/* A point's estimate and 95% interval (percent) from its models' per-example outcomes: the mean over
 * models; with several models the bootstrap over seeds and examples of stats.h (the verdict's, run on
 * A = the outcomes and B = nothing robust, so A - B is the accuracy), with one the Wilson interval. Any
 * model without outcomes: no interval. */
static void point_interval(REv **m, int S, double *y, double *lo, double *hi) {
    double s = 0;
    int all = 1;
    long maxn = 0;
    for (int k = 0; k < S; k++) {
        s += m[k]->n ? 100.0 * m[k]->robust / m[k]->n : 0;
        all &= m[k]->has;
        if (m[k]->n > maxn) maxn = m[k]->n;
    }
    *y = S ? s / S : NAN;
    *lo = *hi = NAN;
    if (!S || !all) return;
    if (S == 1) {
        stats_wilson(m[0]->robust, m[0]->n, STATS_Z95, lo, hi);
        *lo *= 100;
        *hi *= 100;
        return;
    }
    uint8_t *zero = xcalloc((size_t)maxn + 1, 1);
    StatsSeed *sd = xcalloc((size_t)S, sizeof *sd);
    int crossed = 1;
    for (int k = 0; k < S; k++) {
        sd[k] = (StatsSeed){m[k]->robust_ok, zero, m[k]->n};
        crossed &= m[k]->n == m[0]->n && memcmp(m[k]->index, m[0]->index, sizeof(int32_t) * (size_t)m[0]->n) == 0;
    }
    StatsBootOpts o = {.reps = 2000, .level = 0.95, .seed = 1, .design = crossed ? STATS_CROSSED : STATS_NESTED};
    StatsInterval iv = stats_bootstrap_diff(sd, S, &o);
    *lo = 100 * iv.lo;
    *hi = 100 * iv.hi;
    free(sd);
    free(zero);
}

static int rev_cmp(const void *a, const void *b) {
    const REv *x = a, *y = b;
    int c;
    if ((c = strcmp(x->group, y->group))) return c;
    if ((c = x->prank - y->prank)) return c;
    if ((c = strcmp(x->panel, y->panel))) return c;
    if ((c = x->lt - y->lt)) return c;
    if ((c = strcmp(x->series, y->series))) return c;
    return x->eps < y->eps ? -1 : x->eps > y->eps;
}

/* "n 500, 10 steps of 2.5*eps/10, 1 restart" from a panel's first evaluation; n as a range when it varies */
static void attack_caption(const REv *e, long nlo, long nhi, char *out, size_t cap) {
    char n[48];
    if (nlo == nhi) snprintf(n, sizeof n, "n %ld", nhi);
    else snprintf(n, sizeof n, "n %ld-%ld", nlo, nhi);
    if (str_eq(e->attack, "square"))
        snprintf(out, cap, "%s, %ld queries", n, e->queries);
    else if (str_eq(e->attack, "fgsm"))
        snprintf(out, cap, "%s, one step of eps", n);
    else if (strncmp(e->attack, "autoattack", 10) == 0)
        snprintf(out, cap, "%s, %s, %ld steps, %ld restart%s", n, str_eq(e->attack, "autoattack") ? "standard" : "rand",
                 e->steps, e->restarts, e->restarts == 1 ? "" : "s");
    else {
        char step[48];
        if (!e->alpha_text[0]) snprintf(step, sizeof step, "2.5*eps/%ld", e->steps);
        else if (e->alpha_text[0] == 'r') snprintf(step, sizeof step, "%s*eps", e->alpha_text + 1);
        else snprintf(step, sizeof step, "%s", e->alpha_text);
        if (str_eq(e->attack, "pgd"))
            snprintf(out, cap, "%s, %ld steps of %s, %ld restart%s", n, e->steps, step, e->restarts, e->restarts == 1 ? "" : "s");
        else
            snprintf(out, cap, "%s, %ld steps, %ld restart%s", n, e->steps, e->restarts, e->restarts == 1 ? "" : "s");
    }
    if (e->eot > 1) snprintf(out + strlen(out), cap - strlen(out), ", EOT %ld", e->eot);
}

/* Loads the evaluations (one per model and key) and the worst case (worst.h) into REv rows. */
static int robust_load(Db *db, REv **out, int *nout) {
    static const char sql[] =
        "SELECT v.dataset, v.model, coalesce(v.kind, '?'), v.rule, v.attack_label, v.source_label, v.attack, v.eps,"
        " v.eps_text, v.norm, v.n, v.n_robust_ok, e.outcomes, coalesce(v.steps, 0), coalesce(v.restarts, 1),"
        " coalesce(v.queries, 0), coalesce(v.eot, 1), coalesce(v.alpha_text, ''), v.eval_id,"
        " EXISTS(SELECT 1 FROM runs f WHERE f.kind = 'finetune' AND f.model = v.model"
        "  AND (f.dataset = v.dataset OR f.dataset LIKE (CASE WHEN instr(v.dataset, '[') > 0"
        "   THEN substr(v.dataset, 1, instr(v.dataset, '[') - 1) ELSE v.dataset END) || '[%'))"
        " FROM " ONE_PER_MODEL_CLASSIFY " v JOIN evals e ON e.id = v.eval_id WHERE v.n > 0";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: plot query failed: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
    REv *v = NULL;
    int n = 0, cap = 0, rc, fail = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) { cap = cap ? 2 * cap : 64; v = realloc(v, sizeof *v * (size_t)cap); CHECK(v); }
        REv *e = &v[n];
        memset(e, 0, sizeof *e);
        char fam[128];
        family(txt(st, 0), fam, sizeof fam);
        snprintf(e->group, sizeof e->group, "%s / %s", fam, txt(st, 1));
        const char *kind = txt(st, 2), *rule = txt(st, 3);
        int pretrained = str_eq(kind, "train") && sqlite3_column_int(st, 19);
        if (pretrained) { snprintf(e->series, sizeof e->series, "%s (pretrained)", rule); e->lt = LT_PRETRAINED; }
        else { snprintf(e->series, sizeof e->series, "%s", rule); e->lt = plot_rule_linetype(rule); }
        snprintf(e->source, sizeof e->source, "%s", txt(st, 5));
        snprintf(e->panel, sizeof e->panel, "%s (%s)", txt(st, 4), e->source);
        snprintf(e->attack, sizeof e->attack, "%s", txt(st, 6));
        e->prank = 10 * attack_rank(txt(st, 4)) + src_rank(e->source);
        e->eps = sqlite3_column_double(st, 7);
        snprintf(e->eps_text, sizeof e->eps_text, "%s", txt(st, 8));
        snprintf(e->norm, sizeof e->norm, "%s", txt(st, 9));
        e->n = sqlite3_column_int64(st, 10);
        e->robust = sqlite3_column_int64(st, 11);
        e->steps = sqlite3_column_int64(st, 13);
        e->restarts = sqlite3_column_int64(st, 14);
        e->queries = sqlite3_column_int64(st, 15);
        e->eot = sqlite3_column_int64(st, 16);
        snprintf(e->alpha_text, sizeof e->alpha_text, "%s", txt(st, 17));
        if (sqlite3_column_type(st, 12) == SQLITE_BLOB) {
            Outcomes o;
            if (outcomes_decode(sqlite3_column_blob(st, 12), sqlite3_column_bytes(st, 12), (long)sqlite3_column_int64(st, 18), &o) < 0) {
                fail = 1;
                n++;
                break;
            }
            if (o.kind == OUT_CLASSIFY && o.n == e->n) {
                e->has = 1;
                e->index = o.index;
                e->robust_ok = o.robust_ok;
                o.index = NULL;
                o.robust_ok = NULL;
            }
            outcomes_free(&o);
        }
        n++;
    }
    sqlite3_finalize(st);
    if (!fail && rc != SQLITE_DONE) fail = err_set("%s: plot query failed: %s", db_path(db), sqlite3_errmsg(db_sqlite(db))) != 0;
    /* the worst case: one row per model and eps (its first example set) */
    WorstRow *w = NULL;
    int nw = 0;
    if (!fail && worst_load(db, &w, &nw) < 0) fail = 1;
    int norms = 0;
    for (int i = 1; i < nw; i++) norms |= !str_eq(w[i].norm, w[0].norm);
    for (int i = 0; i < nw && !fail; i++) {
        if (w[i].set != 0 || !w[i].n) continue;
        if (n == cap) { cap = cap ? 2 * cap : 64; v = realloc(v, sizeof *v * (size_t)cap); CHECK(v); }
        REv *e = &v[n++];
        memset(e, 0, sizeof *e);
        char fam[128];
        family(w[i].dataset, fam, sizeof fam);
        snprintf(e->group, sizeof e->group, "%s / %s", fam, w[i].model);
        int pretrained = 0;
        if (str_eq(w[i].kind, "train"))
            for (int k = 0; k < nw && !pretrained; k++) {
                char f2[128];
                family(w[k].dataset, f2, sizeof f2);
                pretrained = str_eq(w[k].kind, "finetune") && str_eq(f2, fam) && str_eq(w[k].model, w[i].model);
            }
        if (pretrained) { snprintf(e->series, sizeof e->series, "%s (pretrained)", w[i].rule); e->lt = LT_PRETRAINED; }
        else { snprintf(e->series, sizeof e->series, "%s", w[i].rule); e->lt = plot_rule_linetype(w[i].rule); }
        if (norms) snprintf(e->panel, sizeof e->panel, "worst case, %s (every attack and source)", w[i].norm);
        else snprintf(e->panel, sizeof e->panel, "worst case (every attack and source)");
        snprintf(e->source, sizeof e->source, "worst");
        snprintf(e->attack, sizeof e->attack, "worst");
        e->prank = 1000;
        e->eps = w[i].eps;
        snprintf(e->eps_text, sizeof e->eps_text, "%s", w[i].eps_text);
        snprintf(e->norm, sizeof e->norm, "%s", w[i].norm);
        e->n = w[i].n;
        e->robust = w[i].robust;
        e->steps = w[i].nevals;
        e->has = 1;
        e->index = w[i].index;
        e->robust_ok = w[i].robust_ok;
        w[i].index = NULL;
        w[i].robust_ok = NULL;
    }
    worst_free(w, nw);
    if (fail) { rev_free(v, n); return -1; }
    qsort(v, (size_t)n, sizeof *v, rev_cmp);
    *out = v;
    *nout = n;
    return 0;
}

static int fig_robust(Figs *fs) {
    REv *v = NULL;
    int n = 0;
    if (robust_load(fs->db, &v, &n) < 0) return -1;
    if (!n) {
        fprintf(stderr, "plot: no evals in %s; skipping robust_eps\n", db_path(fs->db));
        free(v);
        return 0;
    }
    int rc = 0, nointerval = 0;
    REv **grp = xcalloc((size_t)n, sizeof *grp);
    for (int g0 = 0; g0 < n && rc == 0;) {
        int g1 = g0;
        while (g1 < n && str_eq(v[g1].group, v[g0].group)) g1++;
        Pans ps = {0};
        int smin = 1 << 30, smax = 0;
        for (int p0 = g0; p0 < g1;) {
            int p1 = p0;
            while (p1 < g1 && str_eq(v[p1].panel, v[p0].panel)) p1++;
            Pan *p = pans_add(&ps, v[p0].panel);
            snprintf(p->ylabel, sizeof p->ylabel, "robust accuracy (%%)");
            p->ylo = -4;
            p->yhi = 104;
            long nlo = v[p0].n, nhi = v[p0].n;
            for (int i = p0; i < p1; i++) {
                if (v[i].n < nlo) nlo = v[i].n;
                if (v[i].n > nhi) nhi = v[i].n;
                pan_tick(p, v[i].eps, v[i].eps_text);
            }
            char cap[200];
            if (str_eq(v[p0].attack, "worst"))
                snprintf(cap, sizeof cap, "n %ld%s, per example: robust only if it survives every evaluation", nhi,
                         nlo != nhi ? " (largest)" : "");
            else attack_caption(&v[p0], nlo, nhi, cap, sizeof cap);
            snprintf(p->xlabel, sizeof p->xlabel, "eps (%s)\n%s", v[p0].norm, cap);
            for (int s0 = p0; s0 < p1;) {
                int s1 = s0;
                while (s1 < p1 && str_eq(v[s1].series, v[s0].series)) s1++;
                Ser *s = pan_series(p, v[s0].series, v[s0].lt);
                for (int e0 = s0; e0 < s1;) {
                    int e1 = e0, S = 0;
                    while (e1 < s1 && v[e1].eps == v[e0].eps) grp[S++] = &v[e1++];
                    double y, lo, hi;
                    point_interval(grp, S, &y, &lo, &hi);
                    nointerval += !isfinite(lo);
                    ser_add(s, v[e0].eps, y, lo, hi);
                    if (S < smin) smin = S;
                    if (S > smax) smax = S;
                    e0 = e1;
                }
                s0 = s1;
            }
            /* BP in every panel: BP's feedback gradient is its true gradient, so a source BP was not
               attacked through shows BP's true-gradient curve of the same attack (as the verdict pairs it) */
            int has_bp = 0;
            for (int k = 0; k < p->ns; k++) has_bp |= str_eq(p->s[k].label, "bp");
            if (!has_bp && !str_eq(v[p0].attack, "worst") && !str_eq(v[p0].source, "black-box")) {
                char want[160];
                const char *lp = strrchr(v[p0].panel, '(');
                snprintf(want, sizeof want, "%.*s(true)", lp ? (int)(lp - v[p0].panel) : 0, v[p0].panel);
                for (int i = g0; i < g1;) {
                    int j = i, S = 0;
                    if (!str_eq(v[i].panel, want) || !str_eq(v[i].series, "bp")) { i++; continue; }
                    Ser *s = pan_series(p, "bp", plot_rule_linetype("bp"));
                    while (j < g1 && str_eq(v[j].panel, want) && str_eq(v[j].series, "bp") && v[j].eps == v[i].eps) grp[S++] = &v[j++];
                    double y, lo, hi;
                    point_interval(grp, S, &y, &lo, &hi);
                    ser_add(s, v[i].eps, y, lo, hi);
                    i = j;
                }
            }
            p0 = p1;
        }
        char seeds[64], title[600], name[256];
        if (smin == smax) snprintf(seeds, sizeof seeds, "%d seed%s", smax, smax == 1 ? "" : "s");
        else snprintf(seeds, sizeof seeds, "%d-%d seeds", smin, smax);
        snprintf(title, sizeof title, "%s: robust accuracy vs eps, mean over %s\nshaded: 95%% interval (%s)", v[g0].group, seeds,
                 smax > 1 ? "bootstrap over seeds and examples; Wilson where one seed" : "Wilson, one seed");
        fig_name(fs, "robust_eps", v[g0].group, name, sizeof name);
        rc = line_figure(fs, name, title, &ps, "95% interval", 3);
        pans_free(&ps);
        g0 = g1;
    }
    if (nointerval)
        fprintf(stderr, "plot: %d point%s of robust_eps without an interval (evaluations recorded before per-example outcomes)\n",
                nointerval, nointerval == 1 ? "" : "s");
    free(grp);
    rev_free(v, n);
    return rc;
}

/* ---- the verdict: rule minus BP per source, with intervals ---- */

static int src_style(const char *src) {
    for (int i = 0; i < (int)ARRAY_LEN(k_src_styles) - 1; i++)
        if (strncmp(src, k_src_styles[i].prefix, strlen(k_src_styles[i].prefix)) == 0) return 11 + i;
    return 11 + (int)ARRAY_LEN(k_src_styles) - 1;
}

static int fig_verdict(Figs *fs) {
    VerdictSet vs;
    if (verdict_compute(fs->db, &vs) < 0) return -1;
    int rc = 0, any = 0;
    for (int i = 0; i < vs.n; i++) any |= vs.rows[i].paired && !vs.rows[i].baseline && vs.rows[i].eps > 0;
    if (!any) {
        fprintf(stderr, "plot: no rule paired with BP at eps > 0 in %s; skipping verdict\n", db_path(fs->db));
        verdict_set_free(&vs);
        return 0;
    }
    char done_groups[32][200];
    int ndone = 0;
    for (int g = 0; g < vs.n && rc == 0; g++) {
        char fam[128], group[200];
        family(vs.rows[g].dataset, fam, sizeof fam);
        snprintf(group, sizeof group, "%s / %s", fam, vs.rows[g].model);
        int dup = 0;
        for (int k = 0; k < ndone && !dup; k++) dup = str_eq(done_groups[k], group);
        if (dup || ndone == 32) continue;
        snprintf(done_groups[ndone++], sizeof done_groups[0], "%s", group);
        /* panels: the eps (and norms) of this group with a compared rule */
        int pan_row[64], npan = 0;
        for (int i = 0; i < vs.n; i++) {
            const VerdictRow *r = &vs.rows[i];
            char f2[128], g2[200];
            family(r->dataset, f2, sizeof f2);
            snprintf(g2, sizeof g2, "%s / %s", f2, r->model);
            if (!str_eq(g2, group) || !r->paired || r->baseline || !(r->eps > 0)) continue;
            int seen = 0;
            for (int k = 0; k < npan && !seen; k++)
                seen = vs.rows[pan_row[k]].eps == r->eps && str_eq(vs.rows[pan_row[k]].norm, r->norm);
            if (!seen && npan < 64) pan_row[npan++] = i;
        }
        int nnorm = 0;
        for (int k = 1; k < npan; k++) nnorm |= !str_eq(vs.rows[pan_row[k]].norm, vs.rows[pan_row[0]].norm);
        int max_rules = 1;
        for (int k = 0; k < npan; k++) {
            int c = 0;
            for (int i = 0; i < vs.n; i++) {
                const VerdictRow *r = &vs.rows[i];
                c += r->paired && !r->baseline && r->eps == vs.rows[pan_row[k]].eps && str_eq(r->norm, vs.rows[pan_row[k]].norm);
            }
            if (c > max_rules) max_rules = c;
        }
        int S = 0;
        Fig f;
        char name[256];
        fig_name(fs, "verdict", group, name, sizeof name);
        /* eps panels and the legend in one row up to three, else two or three wide (not a strip) */
        int cells = npan + 1;
        fig_begin(&f, name, cells, cells <= 3 ? cells : cells == 4 ? 2 : 3, 470, 130 + 62 * max_rules, 2);
        for (int k = 0; k < npan; k++) {
            const VerdictRow *r0 = &vs.rows[pan_row[k]];
            /* the rows of this panel, in verdict order (rule order) */
            int rows[64], nr = 0;
            double xmax = 1;
            for (int i = 0; i < vs.n && nr < 64; i++) {
                const VerdictRow *r = &vs.rows[i];
                if (!r->paired || r->baseline || r->eps != r0->eps || !str_eq(r->norm, r0->norm)) continue;
                char f2[128], g2[200];
                family(r->dataset, f2, sizeof f2);
                snprintf(g2, sizeof g2, "%s / %s", f2, r->model);
                if (!str_eq(g2, group)) continue;
                rows[nr++] = i;
                if (r->worst_d.S > S) S = r->worst_d.S;
                const VerdictDelta *ds[VERDICT_MAX_SRC + 1];
                for (int s = 0; s < vs.nsrc; s++) ds[s] = &r->by_src[s];
                ds[vs.nsrc] = &r->worst_d;
                for (int s = 0; s <= vs.nsrc; s++)
                    if (ds[s]->S) xmax = fmax(xmax, fmax(fabs(ds[s]->lo), fabs(ds[s]->hi)));
            }
            panel_reset(f.body);
            char title[200];
            snprintf(title, sizeof title, "eps %s%s%s", r0->eps_text, nnorm ? ", " : "", nnorm ? r0->norm : "");
            fputs("  set title ", f.body);
            gp_str(f.body, title);
            fputs("\n  set xlabel \"robust accuracy, rule minus BP (points)\"\n  unset ylabel\n", f.body);
            fprintf(f.body, "  set xrange [%.6g:%.6g]\n  set yrange [%d.5:-0.5]\n  set grid noytics\n  set border 1\n", -1.08 * xmax,
                    1.08 * xmax, nr - 1);
            fputs("  set ytics scale 0 (", f.body);
            for (int j = 0; j < nr; j++) {
                char lab[160];
                snprintf(lab, sizeof lab, "%s\n%s", vs.rows[rows[j]].rule, vs.rows[rows[j]].verdict);
                fprintf(f.body, "%s", j ? ", " : "");
                gp_str(f.body, lab);
                fprintf(f.body, " %d", j);
            }
            fputs(")\n  set arrow from 0, graph 0 to 0, graph 1 nohead lc rgb \"#555555\" dt 2 lw 1\n", f.body);
            /* one datablock per marker kind: y (rule index, offset per source), d, lo, hi */
            int nk = vs.nsrc + 1;
            fputs("  plot ", f.body);
            int first = 1;
            for (int s = 0; s < nk; s++) {
                int b = fig_block(&f), rowsin = 0;
                fprintf(f.data, "# %s eps %s: %s, per rule: y d lo hi\n", group, r0->eps_text, s < vs.nsrc ? vs.src[s] : "worst case");
                for (int j = 0; j < nr; j++) {
                    const VerdictRow *r = &vs.rows[rows[j]];
                    const VerdictDelta *d = s < vs.nsrc ? &r->by_src[s] : &r->worst_d;
                    if (!d->S) continue;
                    double off = nk > 1 ? -0.3 + 0.6 * s / (nk - 1) : 0;
                    fprintf(f.data, "%.4f %.6g %.6g %.6g  # %s\n", j + off, d->d, d->lo, d->hi, r->rule);
                    rowsin++;
                }
                fig_block_end(&f);
                if (!rowsin) continue;
                fprintf(f.body, "%s$d%d using 2:1:3:4 with xerrorbars lt %d notitle", first ? "" : ", \\\n       ", b,
                        s < vs.nsrc ? src_style(vs.src[s]) : 16);
                first = 0;
            }
            if (first) fputs("NaN notitle", f.body);
            fputs("\n", f.body);
        }
        /* legend: one point per marker kind */
        fputs("  unset title\n  unset xlabel\n  unset ylabel\n  unset border\n  unset tics\n  unset grid\n  unset arrow\n"
              "  set xrange [0:1]\n  set yrange [0:1]\n  set key center center vertical Left reverse box opaque spacing 1.4\n  plot ",
              f.body);
        for (int s = 0; s <= vs.nsrc; s++) {
            char lab[120];
            snprintf(lab, sizeof lab, "%s", s < vs.nsrc ? vs.src[s] : "worst case (every attack and source)");
            fprintf(f.body, "%sNaN with points lt %d title ", s ? ", \\\n       " : "", s < vs.nsrc ? src_style(vs.src[s]) : 16);
            gp_str(f.body, lab);
        }
        fputs(", \\\n       NaN with lines lc rgb \"#555555\" dt 2 lw 1 title \"no difference\"\n", f.body);
        char title[600];
        snprintf(title, sizeof title, "%s: does the rule make the network more robust than BP? (%d seed%s, paired by seed)\n"
                 "marker: rule minus BP per gradient source; bar: 95%% bootstrap interval over seeds and examples; label: the verdict",
                 group, S, S == 1 ? "" : "s");
        rc = fig_finish(fs, &f, title);
    }
    verdict_set_free(&vs);
    return rc;
}

/* ---- line figures from SQL rows (group, panel, series, x, y, band half-width) ---- */

/* Rows of (group, panel, series, x, y, e) into panels per group, then one figure per group. */
typedef struct LSpec {
    const char *base, *title, *xlabel, *ylabel, *band;
    int int_x, fit_y, sd_band;  /* sd_band: e is a ± sd half-width drawn as the band */
} LSpec;

static int sql_line_figures(Figs *fs, const char *sql, const LSpec *ls, const char *what) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(fs->db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    char group[200] = "";
    Pans ps = {0};
    int rc = 0, rows = 0, step;
    for (;;) {
        step = sqlite3_step(st);
        int have = step == SQLITE_ROW;
        char g[200] = "";
        if (have) {
            char fam[128];
            family(txt(st, 0), fam, sizeof fam);
            snprintf(g, sizeof g, "%s / %s", fam, txt(st, 1));
        }
        if (ps.n && (!have || !str_eq(g, group))) {
            char name[256], title[500];
            fig_name(fs, ls->base, group, name, sizeof name);
            snprintf(title, sizeof title, "%s: %s", group, ls->title);
            rc = line_figure(fs, name, title, &ps, ls->band, 2);
            pans_free(&ps);
            if (rc < 0) break;
        }
        if (!have) break;
        if (sqlite3_column_type(st, 5) == SQLITE_NULL) continue;
        rows++;
        snprintf(group, sizeof group, "%s", g);
        const char *panel = txt(st, 2);
        Pan *p = ps.n && str_eq(ps.p[ps.n - 1].title, panel) ? &ps.p[ps.n - 1] : NULL;
        if (!p) {
            p = pans_add(&ps, panel);
            snprintf(p->xlabel, sizeof p->xlabel, "%s", ls->xlabel);
            snprintf(p->ylabel, sizeof p->ylabel, "%s", ls->ylabel);
            p->int_x = ls->int_x;
            if (!ls->fit_y) { p->ylo = -4; p->yhi = 104; }
        }
        const char *series = txt(st, 3);
        Ser *s = pan_series(p, series, plot_rule_linetype(series));
        double x = sqlite3_column_double(st, 4), y = sqlite3_column_double(st, 5);
        double e = sqlite3_column_type(st, 6) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 6);
        if (ls->sd_band && isfinite(e)) ser_add(s, x, y, y - e, y + e);
        else ser_add(s, x, y, NAN, NAN);
        if (!ls->int_x) pan_tick(p, x, txt(st, 7));
    }
    if (rc == 0 && step != SQLITE_DONE) rc = err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    sqlite3_finalize(st);
    pans_free(&ps);
    if (rc == 0 && !rows) fprintf(stderr, "plot: no %s in %s; skipping %s\n", what, db_path(fs->db), ls->base);
    return rc;
}

/* Hashing: the attacked queries' mAP vs eps, one line per rule, a panel per attack × source × bits. */
static int fig_hash(Figs *fs) {
    static const char sql[] =
        "SELECT dataset, model, attack_label || ' (' || source_label || '), ' || coalesce(bits, '?') || ' bits', rule, eps,"
        " avg(100.0 * map_adv), CASE WHEN count(*) > 1 THEN sqrt(max(0, (sum(10000.0 * map_adv * map_adv)"
        " - count(*) * avg(100.0 * map_adv) * avg(100.0 * map_adv)) / (count(*) - 1))) END, min(eps_text)"
        " FROM eval_view WHERE task = 'hash' AND map_adv IS NOT NULL"
        " GROUP BY dataset, model, bits, attack_label, source_label, rule, eps"
        " ORDER BY dataset, model, bits, attack_label,"
        " CASE WHEN grad_source = 'true' THEN 0 WHEN grad_source = 'feedback' THEN 1 ELSE 2 END, source_label, " RULE_ORDER ", eps";
    static const LSpec ls = {"hash_map_eps", "mAP of the attacked queries vs eps, mean over seeds; shaded: ± sd over seeds",
                             "eps", "mAP (%)", "± sd over seeds", 0, 0, 1};
    return sql_line_figures(fs, sql, &ls, "hashing evals");
}

static int fig_training(Figs *fs) {
    static const char sql[] =
        "SELECT dataset, model, panel, rule, epoch, y, NULL, '' FROM ("
        " SELECT r.dataset, r.model, r.kind, r.task, r.rule AS rule, 0 AS pk,"
        "  CASE r.kind WHEN 'train' THEN 'pre-training' ELSE 'fine-tuning' END"
        "   || CASE WHEN r.task = 'hash' THEN ' (hash)' ELSE '' END || ': training accuracy' AS panel,"
        "  e.epoch AS epoch, avg(100.0 * e.train_acc) AS y"
        "  FROM epochs e JOIN runs r ON r.id = e.run_id GROUP BY r.dataset, r.model, r.kind, r.task, r.rule, e.epoch"
        " UNION ALL"
        " SELECT r.dataset, r.model, r.kind, r.task, r.rule, 1,"
        "  CASE r.kind WHEN 'train' THEN 'pre-training' ELSE 'fine-tuning' END"
        "   || CASE WHEN r.task = 'hash' THEN ' (hash): validation mAP' ELSE ': validation accuracy' END,"
        "  e.epoch, avg(100.0 * e.val_acc)"
        "  FROM epochs e JOIN runs r ON r.id = e.run_id GROUP BY r.dataset, r.model, r.kind, r.task, r.rule, e.epoch)"
        " WHERE y IS NOT NULL"
        " ORDER BY CASE WHEN instr(dataset, '[') > 0 THEN substr(dataset, 1, instr(dataset, '[') - 1) ELSE dataset END, model,"
        " kind DESC, task, pk, " RULE_ORDER ", epoch";
    static const LSpec ls = {"training", "accuracy vs epoch (mean over seeds)", "epoch", "accuracy (%)", NULL, 1, 1, 0};
    return sql_line_figures(fs, sql, &ls, "epoch rows");
}

/* Alignment: per layer, angle(B, W) and the angle between the delivered and the true BP error, per rule.
 * BP (0 by definition) is not drawn; a panel whose every value is 0 (the classifier's error, which every
 * rule delivers exactly) is left out and named in the title; one y range per quantity. */
static int fig_alignment(Figs *fs) {
    long nlayers = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(fs->db), "SELECT COUNT(DISTINCT layer) FROM alignment a JOIN runs r ON r.id = a.run_id"
                           " WHERE r.rule <> 'bp'", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        nlayers = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (nlayers == 0) {
        fprintf(stderr, "plot: no alignment rows of a rule other than BP in %s; skipping alignment\n", db_path(fs->db));
        return 0;
    }
    const char *layer = nlayers <= 6 ? "a.layer" : "'mean over layers'";
    const char *lkey = nlayers <= 6 ? "lo.k" : "0";
    char sql[4096];
    snprintf(sql, sizeof sql,
             "WITH lo AS (SELECT layer, min(rowid) AS k FROM alignment GROUP BY layer),"
             " m AS (SELECT r.dataset, r.model, " KIND_TASK " AS kind, r.rule AS rule, %s AS lk, %s AS lname, a.epoch,"
             "  avg(a.angle_bw) AS bw, avg(a.grad_angle) AS ga"
             "  FROM alignment a JOIN runs r ON r.id = a.run_id JOIN lo ON lo.layer = a.layer WHERE r.rule <> 'bp'"
             "  GROUP BY r.dataset, r.model, r.kind, r.task, r.rule, lname, a.epoch)"
             " SELECT dataset, model, kind, lk, pk, lname, rule, epoch, y FROM ("
             "  SELECT dataset, model, kind, lk, 0 AS pk, lname, rule, epoch, bw AS y FROM m"
             "  UNION ALL SELECT dataset, model, kind, lk, 1, lname, rule, epoch, ga FROM m)"
             " WHERE y IS NOT NULL"
             " ORDER BY CASE WHEN instr(dataset, '[') > 0 THEN substr(dataset, 1, instr(dataset, '[') - 1) ELSE dataset END,"
             " model, kind DESC, lk, pk, " RULE_ORDER ", epoch",
             lkey, layer);
    if (sqlite3_prepare_v2(db_sqlite(fs->db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    char group[200] = "", zero[600] = "";
    Pans ps = {0};
    int rc = 0, step, kinds = 0;
    char kind0[48] = "";
    for (;;) {
        step = sqlite3_step(st);
        int have = step == SQLITE_ROW;
        char g[200] = "";
        if (have) {
            char fam[128];
            family(txt(st, 0), fam, sizeof fam);
            snprintf(g, sizeof g, "%s / %s", fam, txt(st, 1));
        }
        if (ps.n && (!have || !str_eq(g, group))) {
            /* leave out the panels whose every value is 0 */
            int k = 0;
            for (int i = 0; i < ps.n; i++) {
                double mx = 0;
                for (int s = 0; s < ps.p[i].ns; s++)
                    for (int j = 0; j < ps.p[i].s[s].n; j++) mx = fmax(mx, fabs(ps.p[i].s[s].v[j].y));
                if (mx < 1e-6) {
                    size_t l = strlen(zero);
                    snprintf(zero + l, sizeof zero - l, "%s%s", l ? ", " : "", ps.p[i].title);
                    for (int s = 0; s < ps.p[i].ns; s++) free(ps.p[i].s[s].v);
                    free(ps.p[i].s);
                    continue;
                }
                ps.p[k++] = ps.p[i];
            }
            ps.n = k;
            char name[256], title[1200];
            fig_name(fs, "alignment", group, name, sizeof name);
            snprintf(title, sizeof title, "%s: alignment with BP vs epoch (degrees, mean over seeds; BP is 0 by definition)%s%s%s",
                     group, zero[0] ? "\nidentical to BP's (0 throughout), not drawn: " : "", zero, "");
            if (ps.n) rc = line_figure(fs, name, title, &ps, NULL, -2); /* a row per layer: B-W angle | error angle */
            pans_free(&ps);
            zero[0] = 0;
            if (rc < 0) break;
        }
        if (!have) break;
        snprintf(group, sizeof group, "%s", g);
        const char *kind = txt(st, 2);
        if (!kind0[0]) snprintf(kind0, sizeof kind0, "%s", kind);
        kinds |= !str_eq(kind, kind0);
        int pk = sqlite3_column_int(st, 4);
        char panel[200];
        snprintf(panel, sizeof panel, "%s%s%s: %s", kinds ? kind : "", kinds ? ", " : "", txt(st, 5),
                 pk ? "angle(delta, BP delta)" : "angle(B, W)");
        Pan *p = NULL;
        for (int i = 0; i < ps.n && !p; i++)
            if (str_eq(ps.p[i].title, panel)) p = &ps.p[i];
        if (!p) {
            p = pans_add(&ps, panel);
            snprintf(p->xlabel, sizeof p->xlabel, "epoch");
            snprintf(p->ylabel, sizeof p->ylabel, "degrees");
            p->int_x = 1;
            p->yshare = -1 - pk; /* one range per quantity, over the layers */
        }
        const char *rule = txt(st, 6);
        ser_add(pan_series(p, rule, plot_rule_linetype(rule)), sqlite3_column_double(st, 7), sqlite3_column_double(st, 8), NAN, NAN);
    }
    if (rc == 0 && step != SQLITE_DONE) rc = err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    sqlite3_finalize(st);
    pans_free(&ps);
    return rc;
}

/* Transfer matrix: y = surrogate rule, x = attacked rule, colour = robust accuracy, a panel per attack ×
 * eps. With a single surrogate a heatmap is one row: the report's transfer table shows it instead. */
static int fig_transfer(Figs *fs) {
    static const char sql[] =
        "SELECT attack_label || ', eps ' || eps_text, coalesce(source_rule, '?'), rule, avg(100.0 * robust_acc),"
        " dataset, model"
        " FROM eval_view WHERE grad_source = 'transfer' AND attack <> 'square' AND robust_acc IS NOT NULL AND eps > 0"
        " GROUP BY dataset, model, attack_label, eps_text, source_rule, rule"
        " ORDER BY dataset, model, CASE attack WHEN 'fgsm' THEN 0 WHEN 'pgd' THEN 1 ELSE 2 END, attack_label, eps, eps_text";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(fs->db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    typedef struct TPt { char panel[120], src[32], dst[32], group[200]; double acc; } TPt;
    TPt *v = NULL;
    int n = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) { cap = cap ? 2 * cap : 64; v = realloc(v, sizeof(TPt) * (size_t)cap); CHECK(v); }
        TPt *t = &v[n++];
        snprintf(t->panel, sizeof t->panel, "%s", txt(st, 0));
        snprintf(t->src, sizeof t->src, "%s", txt(st, 1));
        snprintf(t->dst, sizeof t->dst, "%s", txt(st, 2));
        t->acc = sqlite3_column_double(st, 3);
        char fam[128];
        family(txt(st, 4), fam, sizeof fam);
        snprintf(t->group, sizeof t->group, "%s / %s", fam, txt(st, 5));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) { free(v); return err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db))); }
    if (!n) {
        fprintf(stderr, "plot: no transfer evals in %s; skipping transfer\n", db_path(fs->db));
        return 0;
    }
    rc = 0;
    for (int g0 = 0; g0 < n && rc == 0;) {
        int g1 = g0;
        while (g1 < n && str_eq(v[g1].group, v[g0].group)) g1++;
        /* axes: surrogate rules (y) and attacked rules (x), each in the fixed rule order */
        const char *xs_axis[64], *ys_axis[64];
        int nx = 0, ny = 0;
        for (int i = g0; i < g1; i++) {
            int sx = 0, sy = 0;
            for (int k = 0; k < nx; k++) sx |= str_eq(xs_axis[k], v[i].dst);
            for (int k = 0; k < ny; k++) sy |= str_eq(ys_axis[k], v[i].src);
            if (!sx && nx < (int)ARRAY_LEN(xs_axis)) xs_axis[nx++] = v[i].dst;
            if (!sy && ny < (int)ARRAY_LEN(ys_axis)) ys_axis[ny++] = v[i].src;
        }
        if (ny < 2) {
            fprintf(stderr, "plot: %s: one transfer surrogate (%s); its numbers are the report's transfer table, not a heatmap\n",
                    v[g0].group, ys_axis[0]);
            g0 = g1;
            continue;
        }
        const char **axes[2] = {xs_axis, ys_axis};
        int na[2] = {nx, ny};
        for (int ax = 0; ax < 2; ax++)
            for (int a = 1; a < na[ax]; a++)
                for (int b = a; b > 0 && rule_rank(axes[ax][b]) < rule_rank(axes[ax][b - 1]); b--) {
                    const char *t = axes[ax][b]; axes[ax][b] = axes[ax][b - 1]; axes[ax][b - 1] = t;
                }
        int npanels = 0;
        for (int i = g0; i < g1; i++) {
            int seen = 0;
            for (int k = g0; k < i && !seen; k++) seen = str_eq(v[k].panel, v[i].panel);
            npanels += !seen;
        }
        Fig f;
        char name[256];
        fig_name(fs, "transfer", v[g0].group, name, sizeof name);
        fig_begin(&f, name, npanels, 3, 440, 140 + 60 * ny, 1);
        fputs("  set palette defined (0 \"#440154\", 0.5 \"#21908C\", 1 \"#FDE725\")\n  set cbrange [0:100]\n"
              "  set cblabel \"robust accuracy (%)\"\n  unset key\n  set xlabel \"attacked model (rule)\"\n"
              "  set ylabel \"surrogate model (rule)\"\n", f.body);
        for (int ax = 0; ax < 2; ax++) {
            fprintf(f.body, "  set %ctics (", ax ? 'y' : 'x');
            for (int k = 0; k < na[ax]; k++) { fprintf(f.body, "%s", k ? ", " : ""); gp_str(f.body, axes[ax][k]); fprintf(f.body, " %d", k); }
            fprintf(f.body, ")\n  set %crange [-0.5:%d.5]\n", ax ? 'y' : 'x', na[ax] - 1);
        }
        fputs("  set grid noxtics noytics\n", f.body);
        int *done = xcalloc((size_t)n, sizeof(int));
        for (int i = g0; i < g1; i++) {
            if (done[i]) continue;
            int b = fig_block(&f);
            fprintf(f.data, "# %s: target_index source_index robust_acc_pct\n", v[i].panel);
            for (int j = i; j < g1; j++) {
                if (!str_eq(v[j].panel, v[i].panel)) continue;
                done[j] = 1;
                int xs = 0, ys = 0;
                for (int k = 0; k < nx; k++) if (str_eq(xs_axis[k], v[j].dst)) xs = k;
                for (int k = 0; k < ny; k++) if (str_eq(ys_axis[k], v[j].src)) ys = k;
                fprintf(f.data, "%d %d %.4f\n", xs, ys, v[j].acc);
            }
            fig_block_end(&f);
            /* cell labels: black on the light end of the palette, white on the dark end */
            fputs("  set title ", f.body);
            gp_str(f.body, v[i].panel);
            fprintf(f.body, "\n  plot $d%d using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder lc palette, \\\n"
                            "       $d%d using 1:2:(sprintf(\"%%.1f\", $3)):($3 > 50 ? 0 : 0xffffff) with labels tc rgb variable font \",8\"\n",
                    b, b);
        }
        free(done);
        char title[400];
        snprintf(title, sizeof title, "%s: transfer attacks, robust accuracy (%%) by surrogate and target (mean over seeds)", v[g0].group);
        rc = fig_finish(fs, &f, title);
        g0 = g1;
    }
    free(v);
    return rc;
}

int plot_all(Db *db, const PlotOpts *o, int *nfigures) {
    CHECK(db && o && o->out_dir);
    if (nfigures) *nfigures = 0;
    Figs fs = {o, db, "", 0, 0};
    if (gnuplot_find(o->gnuplot, fs.gp, sizeof fs.gp) < 0) return -1;
    if (dir_create(o->out_dir) < 0) return -1;
    fs.multi = count_groups(db) > 1;
    int (*const figs[])(Figs *) = {fig_verdict, fig_robust, fig_training, fig_alignment, fig_transfer, fig_hash};
    for (size_t i = 0; i < ARRAY_LEN(figs); i++)
        if (figs[i](&fs) < 0) return -1;
    if (nfigures) *nfigures = fs.drawn;
    if (!fs.drawn) fprintf(stderr, "plot: nothing to draw in %s\n", db_path(db));
    return 0;
}
