/* test_cli_docs.c -- what the help texts and docs/results.md promise, against what the code does:
 * every column and view docs/results.md names exists in the schema (and every column is named), rules
 * --help lists its (absent) options, train --help only train's options and every dataset (each one a name
 * dataset_open knows), finetune --help only finetune's, data export --help the folder names it writes,
 * and an exported PNG tree reads back with the dataset's class names (no label prefix).
 */
#define _POSIX_C_SOURCE 200809L
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "harness/core.h"
#include "results/db.h"
#include "tests/test.h"

/* the columns of a table or view of a fresh database, as ",a,b,c," */
static void schema_cols(const char *db, const char *name, char *out, size_t cap) {
    sqlite3 *h = NULL;
    snprintf(out, cap, ",");
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return;
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT name FROM pragma_table_info('%s')", name);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            size_t l = strlen(out);
            snprintf(out + l, cap - l, "%s,", (const char *)sqlite3_column_text(st, 0));
        }
    sqlite3_finalize(st);
    sqlite3_close(h);
}

/* 1 when the documented name (may end in '*') matches a column of cols */
static int col_exists(const char *cols, const char *name) {
    char pat[96];
    size_t n = strlen(name);
    if (n && name[n - 1] == '*') {
        snprintf(pat, sizeof pat, ",%.*s", (int)(n - 1), name);
        return strstr(cols, pat) != NULL;
    }
    snprintf(pat, sizeof pat, ",%s,", name);
    return strstr(cols, pat) != NULL;
}

/* Splits "a, b_*, `c`" into names; calls check on each; returns how many. */
static int each_name(const char *list, const char *cols, const char *where, char *documented, size_t dcap) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ' || *t == '`') t++;
        char *e = t + strlen(t);
        while (e > t && (e[-1] == ' ' || e[-1] == '`')) *--e = 0;
        if (!*t) continue;
        T_ASSERT_MSG(col_exists(cols, t), "docs/results.md names column '%s' of %s, which the schema does not have", t, where);
        size_t l = strlen(documented);
        snprintf(documented + l, dcap - l, "%s,", t);
        n++;
    }
    return n;
}

/* every column of cols is named in documented (exactly, or by a prefix* entry) */
static void all_documented(const char *cols, const char *documented, const char *where) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", cols + 1);
    for (char *save = NULL, *c = strtok_r(buf, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
        char pat[96];
        snprintf(pat, sizeof pat, ",%s,", c);
        char d[4200];
        snprintf(d, sizeof d, ",%s", documented);
        int ok = strstr(d, pat) != NULL;
        for (char *p = d; !ok && (p = strchr(p, '*')); p++) { /* a prefix* entry */
            char *b = p;
            while (b > d && b[-1] != ',') b--;
            ok = strncmp(c, b, (size_t)(p - b)) == 0;
        }
        T_ASSERT_MSG(ok, "column %s of %s is not in docs/results.md", c, where);
    }
}

TEST(docs_results_columns_exist) {
    char db[600];
    snprintf(db, sizeof db, "%s/docs-schema.db", test_tmpdir());
    Db *d = NULL;
    T_ASSERT(db_open(db, &d) == 0);
    db_close(d);
    FILE *f = fopen("docs/results.md", "r");
    T_ASSERT_MSG(f != NULL, "docs/results.md not found (run from the top of the tree)");
    if (!f) return;
    static const char *const objs[] = {"runs", "epochs", "alignment", "evals", "artifacts", "eval_view", "run_view"};
    static char documented[7][4200];
    int named[7] = {0};
    char line[4096];
    int cur = -1, header = 0;
    char cols[7][4200];
    for (int i = 0; i < 7; i++) schema_cols(db, objs[i], cols[i], sizeof cols[i]);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "### ", 4) == 0 || strncmp(line, "## ", 3) == 0) {
            cur = -1;
            for (int i = 0; i < 7; i++) {
                size_t l = strlen(objs[i]);
                if (strncmp(line + 4, objs[i], l) == 0 && line[4 + l] == ' ') cur = i;
            }
            header = 0;
            continue;
        }
        const char *other = "The other columns of eval_view are the evals columns of the same name (";
        if (strncmp(line, other, strlen(other)) == 0) { /* a sentence over two lines */
            char rest[4096];
            snprintf(rest, sizeof rest, "%s", line + strlen(other));
            while (!strchr(rest, ')') && fgets(line, sizeof line, f)) strncat(rest, line, sizeof rest - strlen(rest) - 1);
            char *e = strchr(rest, ')');
            if (e) *e = 0;
            for (char *p = rest; *p; p++) if (*p == '\n') *p = ' ';
            named[5] += each_name(rest, cols[5], "eval_view", documented[5], sizeof documented[5]);
            continue;
        }
        if (cur < 0 || line[0] != '|') continue;
        if (!header++) continue;                 /* | column | meaning | */
        if (strncmp(line, "|---", 4) == 0) continue;
        char *c1 = line + 1, *e = strchr(c1, '|');
        if (!e) continue;
        *e = 0;
        named[cur] += each_name(c1, cols[cur], objs[cur], documented[cur], sizeof documented[cur]);
    }
    fclose(f);
    for (int i = 0; i < 7; i++) {
        T_ASSERT_MSG(named[i] > 0, "docs/results.md has no column table for %s", objs[i]);
        all_documented(cols[i], documented[i], objs[i]);
    }
}

/* canary: a documented name the schema lacks is caught */
static void canary_col(void) {
    char doc[64] = "";
    each_name("rule, seeds", ",rule,model,", "eval_view", doc, sizeof doc);
}
TEST(docs_results_columns_canary) { T_ASSERT(test_expect_failure(canary_col)); }

TEST(help_texts_match_the_commands) {
    char cmd[1200], out[16384];
    snprintf(cmd, sizeof cmd, "%s rules --help", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "options: none");
    T_CONTAINS(out, "takes no options");
    snprintf(cmd, sizeof cmd, "%s train --help", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_ASSERT(strstr(out, "--from") == NULL && strstr(out, "--new-head") == NULL && strstr(out, "--freeze") == NULL);
    T_CONTAINS(out, "--model M");
    /* every dataset listed, and each one a name dataset_open knows (missing files, never "unknown dataset") */
    char names[1024];
    snprintf(names, sizeof names, "%s", DATASET_NAMES);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(names, "|", &save); t; t = strtok_r(NULL, "|", &save)) {
        while (*t == ' ') t++;
        char *e = t + strlen(t);
        while (e > t && e[-1] == ' ') *--e = 0;
        T_CONTAINS(out, t);
        char nm[128];
        snprintf(nm, sizeof nm, "%s", t);
        if (strchr(nm, '[')) *strchr(nm, '[') = 0;   /* synthetic[:N...] -> synthetic */
        if (str_eq(nm, "png:DIR")) snprintf(nm, sizeof nm, "png:%s/no-such-dir", test_tmpdir());
        snprintf(cmd, sizeof cmd, "%s data info %s --data-dir %s/no-data", test_exe(), nm, test_tmpdir());
        char o2[2048];
        test_run(cmd, o2, sizeof o2);
        T_ASSERT_MSG(strstr(o2, "unknown dataset") == NULL, "train --help lists %s, which dataset_open does not know", nm);
        n++;
    }
    T_ASSERT(n >= 14);
    snprintf(cmd, sizeof cmd, "%s finetune --help", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "--from CKPT");
    T_ASSERT(strstr(out, "--model") == NULL && strstr(out, "--hidden") == NULL && strstr(out, "--init-seed") == NULL);
}

TEST(data_export_names_read_back) {
    char dir[600], cmd[1400], out[16384];
    snprintf(dir, sizeof dir, "%s/export", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s data export --help", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "DIR/<split>/<L>_<class>/<I>.png, e.g. DIR/test/7_Sneaker/00019.png");
    snprintf(cmd, sizeof cmd, "%s data export fashion-mnist --png %s --split test --limit 40", test_exe(), dir);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    /* the folder names the help promises */
    snprintf(cmd, sizeof cmd, "ls %s/test", dir);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "7_Sneaker");
    T_CONTAINS(out, "0_T-shirt-top");
    snprintf(cmd, sizeof cmd, "ls %s/test/7_Sneaker | head -1", dir);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_ASSERT_MSG(strspn(out, "0123456789") >= 1 && strncmp(out + strspn(out, "0123456789"), ".png", 4) == 0,
                 "an exported file is not <I>.png: %s", out);
    /* read back: the class names without the label prefix */
    char src[700];
    snprintf(src, sizeof src, "png:%s", dir);
    Dataset d;
    T_ASSERT(dataset_open(src, NULL, SPLIT_TEST, &d) == 0);
    if (d.n) {
        T_ASSERT(str_eq(d.class_names[7], "Sneaker"));
        T_ASSERT(str_eq(d.class_names[0], "T-shirt-top"));
        dataset_close(&d);
    }
}

/* ---- adversarial-example grids ---- */

#include "attacks/attack.h"
#include "datasets/formats.h"

/* pixels brighter than 150 (text, not the dark background) in rows [y0, y1) of a grey or RGB image */
static long bright(const PngImage *im, int y0, int y1, int x0, int x1) {
    long n = 0;
    for (int y = y0; y < y1 && y < im->h; y++)
        for (int x = x0; x < x1 && x < im->w; x++) n += im->pix[((size_t)y * im->w + x) * im->channels] > 150;
    return n;
}

TEST(grid_labels_names_caption) {
    /* two 8x8 examples of classes 7 and 2, the second broken by the attack */
    AttackKeep k;
    attack_keep_init(&k, 2, 64);
    k.n = 2;
    for (int i = 0; i < 128; i++) { k.x[i] = 0.2f; k.x_adv[i] = 0.2f + (i % 3 ? 0.03f : -0.03f); }
    k.y[0] = 7; k.pred_clean[0] = 7; k.pred_adv[0] = 7;
    k.y[1] = 2; k.pred_clean[1] = 2; k.pred_adv[1] = 4;
    static char names[100][32];
    snprintf(names[2], 32, "Pullover");
    snprintf(names[4], 32, "Coat");
    snprintf(names[7], 32, "Sneaker");
    char a[600], b[600], c[600];
    snprintf(a, sizeof a, "%s/grid-names.png", test_tmpdir());
    snprintf(b, sizeof b, "%s/grid-numbers.png", test_tmpdir());
    snprintf(c, sizeof c, "%s/grid-nocaption.png", test_tmpdir());
    T_EQ_INT(attack_grid_png(a, &k, 1, 8, 8, 8.0 / 255, (const char (*)[32])names, "pgd10  eps 8/255  gradient true"), 0);
    T_EQ_INT(attack_grid_png(b, &k, 1, 8, 8, 8.0 / 255, NULL, "pgd10  eps 8/255  gradient true"), 0);
    T_EQ_INT(attack_grid_png(c, &k, 1, 8, 8, 8.0 / 255, (const char (*)[32])names, NULL), 0);
    attack_keep_free(&k);
    PngImage ia, ib, ic;
    memset(&ia, 0, sizeof ia); memset(&ib, 0, sizeof ib); memset(&ic, 0, sizeof ic);
    T_EQ_INT(png_read_file(a, &ia), 0);
    T_EQ_INT(png_read_file(b, &ib), 0);
    T_EQ_INT(png_read_file(c, &ic), 0);
    if (ia.pix && ib.pix && ic.pix) {
        /* the caption is a band of text on top: the grid without one is shorter by it */
        T_ASSERT(ia.h > ic.h);
        int cap = ia.h - ic.h + 6;
        T_ASSERT(bright(&ia, 0, cap, 0, ia.w) > 100);
        /* row labels left of the images: "clean", "perturbation x16" (1 / (2 * 8/255) = 15.9), "adversarial" */
        T_ASSERT(bright(&ia, cap, ia.h, 0, 60) > 100);
        /* names instead of numbers under the images: the same size, other pixels, more ink */
        T_EQ_INT(ia.w, ib.w);
        T_EQ_INT(ia.h, ib.h);
        T_ASSERT(bright(&ia, cap, ia.h, 100, ia.w) > bright(&ib, cap, ib.h, 100, ib.w));
    }
    free(ia.pix); free(ib.pix); free(ic.pix);
}

/* ---- the grid's 5x7 font, read back from a rendered caption ---- */

/* The 5x7 cells of the caption's first character: the caption is drawn at (6, 6), each font pixel 2x2. */
static int glyph_read(char ch, char cells[36]) {
    AttackKeep k;
    attack_keep_init(&k, 1, 64);
    k.n = 1;
    for (int i = 0; i < 64; i++) { k.x[i] = 0; k.x_adv[i] = 0; }
    k.y[0] = 0; k.pred_clean[0] = 0; k.pred_adv[0] = 0;
    char path[600], cap[2] = {ch, 0};
    snprintf(path, sizeof path, "%s/glyph.png", test_tmpdir());
    int rc = attack_grid_png(path, &k, 1, 8, 8, 8.0 / 255, NULL, cap);
    attack_keep_free(&k);
    PngImage im;
    memset(&im, 0, sizeof im);
    if (rc != 0 || png_read_file(path, &im) != 0) { free(im.pix); return -1; }
    for (int r = 0; r < 7; r++)
        for (int c = 0; c < 5; c++) cells[r * 5 + c] = bright(&im, 6 + 2 * r, 7 + 2 * r, 6 + 2 * c, 7 + 2 * c) ? '#' : '.';
    cells[35] = 0;
    free(im.pix);
    return 0;
}

static int glyph_mirrored(const char *g) {
    for (int r = 0; r < 7; r++)
        for (int c = 0; c < 5; c++)
            if (g[r * 5 + c] != g[r * 5 + 4 - c]) return 0;
    return 1;
}

/* 8-connected components of ink */
static int glyph_parts(const char *g) {
    char seen[35] = {0};
    int parts = 0, stack[35];
    for (int s = 0; s < 35; s++) {
        if (g[s] != '#' || seen[s]) continue;
        parts++;
        int top = 0;
        stack[top++] = s;
        seen[s] = 1;
        while (top) {
            int p = stack[--top], r = p / 5, c = p % 5;
            for (int dr = -1; dr <= 1; dr++)
                for (int dc = -1; dc <= 1; dc++) {
                    int rr = r + dr, cc = c + dc, q = rr * 5 + cc;
                    if (rr < 0 || rr >= 7 || cc < 0 || cc >= 5 || g[q] != '#' || seen[q]) continue;
                    seen[q] = 1;
                    stack[top++] = q;
                }
        }
    }
    return parts;
}

static void canary_glyph_plus(void) { T_ASSERT(glyph_mirrored("......#....#..#####..#....#........")); }
static void canary_glyph_comma(void) { T_EQ_INT(glyph_parts(".........................#...#...#."), 1); }

TEST(grid_font_glyphs_are_whole) {
    /* the checkers fail on the glyphs this font once had: a '+' with its bar off-centre, a ',' in pieces */
    T_ASSERT_MSG(test_expect_failure(canary_glyph_plus), "canary: an off-centre '+' passed the mirror check");
    T_ASSERT_MSG(test_expect_failure(canary_glyph_comma), "canary: a comma in two pieces passed the one-piece check");
    char g[36];
    /* characters that are their own mirror image */
    for (const char *s = "AHIMOTUVWXY+-=*'"; *s; s++) {
        T_ASSERT(glyph_read(*s, g) == 0);
        T_ASSERT_MSG(strchr(g, '#') != NULL, "'%c' draws nothing", *s);
        T_ASSERT_MSG(glyph_mirrored(g), "'%c' is not symmetric: %s", *s, g);
    }
    /* characters drawn in one stroke: one 8-connected piece of ink */
    for (const char *s = "ABCDEFGHJKLMNOPRSTUVWXYZ123456789,./()-_+[]"; *s; s++) {
        T_ASSERT(glyph_read(*s, g) == 0);
        T_ASSERT_MSG(glyph_parts(g) == 1, "'%c' is in %d pieces: %s", *s, glyph_parts(g), g);
    }
    /* a comma sits low, like a full stop */
    T_ASSERT(glyph_read(',', g) == 0);
    T_ASSERT_MSG(strchr(g, '#') - g >= 15, "',' has ink in its top half: %s", g);
}
