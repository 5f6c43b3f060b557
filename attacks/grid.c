/* grid.c -- adversarial-example grids as RGB PNG (through datasets/png.h): a caption line on top (attack,
 * eps, gradient source), then one column per example and three labelled rows: clean, the perturbation
 * amplified xK (x_adv - x mapped from [-eps, eps] to [0, 1], grey = unchanged, K = 1 / (2 eps)) and
 * adversarial. Under the clean image "Y <label>" and "P <prediction>", under the adversarial one
 * "P <prediction>", as class names when the dataset has them (else the class number); predictions green
 * when correct, red when wrong. Text is drawn with a 5x7 bitmap font of capitals, digits and punctuation
 * (letters are shown as capitals). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/png.h"
#include "attacks/attack.h"

/* 5x7 glyphs, one string of 35 cells per character ('#' = ink), row by row */
typedef struct Glyph { char ch; const char *rows; } Glyph;
static const Glyph FONT[] = {
    {'A', ".###.#...##...#######...##...##...#"}, {'B', "####.#...##...#####.#...##...#####."},
    {'C', ".###.#...##....#....#....#...#.###."}, {'D', "####.#...##...##...##...##...#####."},
    {'E', "######....#....####.#....#....#####"}, {'F', "######....#....####.#....#....#...."},
    {'G', ".###.#...##....#.####...##...#.####"}, {'H', "#...##...##...#######...##...##...#"},
    {'I', ".###...#....#....#....#....#...###."}, {'J', "..###...#....#....#....#.#..#..##.."},
    {'K', "#...##..#.#.#..##...#.#..#..#.#...#"}, {'L', "#....#....#....#....#....#....#####"},
    {'M', "#...###.###.#.##.#.##...##...##...#"}, {'N', "#...##...###..##.#.##..###...##...#"},
    {'O', ".###.#...##...##...##...##...#.###."}, {'P', "####.#...##...#####.#....#....#...."},
    {'Q', ".###.#...##...##...##.#.##..#..##.#"}, {'R', "####.#...##...#####.#.#..#..#.#...#"},
    {'S', ".#####....#.....###.....#....#####."}, {'T', "#####..#....#....#....#....#....#.."},
    {'U', "#...##...##...##...##...##...#.###."}, {'V', "#...##...##...##...##...#.#.#...#.."},
    {'W', "#...##...##...##.#.##.#.##.#.#.#.#."}, {'X', "#...##...#.#.#...#...#.#.#...##...#"},
    {'Y', "#...##...#.#.#...#....#....#....#.."}, {'Z', "#####....#...#...#...#...#....#####"},
    {'0', ".###.#...##..###.#.###..##...#.###."}, {'1', "..#...##....#....#....#....#...###."},
    {'2', ".###.#...#....#...#...#...#...#####"}, {'3', "####.....#....#.###.....#....#####."},
    {'4', "...#...##..#.#.#..#.#####...#....#."}, {'5', "######....####.....#....##...#.###."},
    {'6', ".###.#....#....####.#...##...#.###."}, {'7', "#####....#...#...#...#....#....#..."},
    {'8', ".###.#...##...#.###.#...##...#.###."}, {'9', ".###.#...##...#.####....#....#.###."},
    {' ', "..................................."}, {'.', "..............................##..."},
    {',', ".....................##....#...#..."}, {':', "......##...##........##...##......."},
    {'/', "....#....#...#...#...#...#....#...."}, {'(', "...#...#...#....#....#.....#.....#."},
    {')', ".#.....#.....#....#....#...#...#..."}, {'-', "...............#####..............."},
    {'_', "..............................#####"}, {'%', "##..###..#...#...#...#...#..###..##"},
    {'=', "..........#####.....#####.........."}, {'+', ".......#....#..#####..#....#......."},
    {'[', ".###..#....#....#....#....#....###."}, {']', ".###....#....#....#....#....#..###."},
    {'\'', "..#....#..........................."}, {'*', ".......#..#.#.#.###.#.#.#..#......."},
    {'?', ".###.#...#....#...#...#.........#.."},
};
enum { GW = 5, GH = 7, ADV = GW + 1, PAD = 6, TXT = GH + 4 };

typedef struct Canvas { unsigned char *pix; int w, h; } Canvas;

static void put(Canvas *cv, int x, int y, const unsigned char rgb[3]) {
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
    memcpy(cv->pix + ((size_t)y * cv->w + x) * 3, rgb, 3);
}

static const char *glyph(char ch) {
    ch = (char)toupper((unsigned char)ch);
    for (size_t i = 0; i < sizeof FONT / sizeof FONT[0]; i++)
        if (FONT[i].ch == ch) return FONT[i].rows;
    return glyph('?');
}

/* Draws s at (x, y), each font pixel an fs x fs block, clipped to max_w pixels (0 = no limit); returns the
 * x after the text. */
static int draw_text(Canvas *cv, int x, int y, const char *s, const unsigned char rgb[3], int fs, int max_w) {
    int x0 = x;
    for (; *s; s++, x += ADV * fs) {
        if (max_w > 0 && x + GW * fs > x0 + max_w) break;
        const char *g = glyph(*s);
        for (int r = 0; r < GH; r++)
            for (int c = 0; c < GW; c++)
                if (g[r * GW + c] == '#')
                    for (int dy = 0; dy < fs; dy++)
                        for (int dx = 0; dx < fs; dx++) put(cv, x + c * fs + dx, y + r * fs + dy, rgb);
    }
    return x;
}
static int text_w(const char *s, int fs) { return (int)strlen(s) * ADV * fs; }

/* v (C, H, W) in [0,1] drawn at (x0, y0), each pixel as an S x S block; C = 1 grey or 3 RGB. */
static void draw_image(Canvas *cv, int x0, int y0, const float *v, int C, int H, int W, int S) {
    for (int yy = 0; yy < H; yy++)
        for (int xx = 0; xx < W; xx++) {
            unsigned char rgb[3];
            for (int k = 0; k < 3; k++) {
                float f = v[((size_t)(C == 3 ? k : 0) * H + yy) * W + xx];
                f = f < 0 ? 0 : f > 1 ? 1 : f;
                rgb[k] = (unsigned char)lrintf(f * 255.0f);
            }
            for (int dy = 0; dy < S; dy++)
                for (int dx = 0; dx < S; dx++) put(cv, x0 + xx * S + dx, y0 + yy * S + dy, rgb);
        }
}

/* the name of class k: the dataset's, else its number */
static void class_name(const char (*names)[32], int k, char *out, size_t n) {
    if (names && k >= 0 && k < 100 && names[k][0]) snprintf(out, n, "%s", names[k]);
    else snprintf(out, n, "%d", k);
}

int attack_grid_png(const char *path, const AttackKeep *k, int C, int H, int W, double eps, const char (*class_names)[32],
                    const char *caption) {
    if (k->n <= 0) return err_set("%s: no examples to draw", path);
    if (C != 1 && C != 3) return err_set("%s: grids need 1- or 3-channel images, not %d", path, C);
    const int D = C * H * W, big = H > W ? H : W;
    const int S = big >= 96 ? 1 : (96 + big - 1) / big;
    const int iw = S * W, cw = iw + PAD, ih = S * H;
    /* the perturbation's amplification: a change d is drawn as 0.5 + 0.5 d / scale, i.e. x 1 / (2 scale) */
    float *pert = xmalloc(sizeof(float) * D);
    double scale = eps;
    if (!(scale > 0)) { /* eps 0: show whatever changed, at full contrast */
        scale = 0;
        for (long j = 0; j < (long)k->n * D; j++) {
            double dv = fabs((double)k->x_adv[j] - k->x[j]);
            if (dv > scale) scale = dv;
        }
    }
    char amp[48], lab_pert[64];
    if (scale > 0) snprintf(amp, sizeof amp, "x%.0f", 1 / (2 * scale));
    else snprintf(amp, sizeof amp, "(none)");
    snprintf(lab_pert, sizeof lab_pert, "perturbation %s", amp);
    const char *rows[3] = {"clean", lab_pert, "adversarial"};
    int lw = 0;
    for (int r = 0; r < 3; r++) if (text_w(rows[r], 1) > lw) lw = text_w(rows[r], 1);
    lw += 2 * PAD;
    const int cap_h = caption && caption[0] ? 2 * GH + 2 * PAD : PAD;
    const int row_h[3] = {ih + 2 * TXT + 2, ih + PAD, ih + TXT + 2};
    Canvas cv = {NULL, lw + cw * k->n + PAD, cap_h + row_h[0] + row_h[1] + row_h[2] + PAD};
    int capw = caption ? text_w(caption, 2) + 2 * PAD : 0;
    if (capw > cv.w) cv.w = capw;
    cv.pix = xmalloc((size_t)cv.w * cv.h * 3);
    memset(cv.pix, 40, (size_t)cv.w * cv.h * 3);
    static const unsigned char WHITE[3] = {230, 230, 230}, GREY[3] = {170, 170, 170}, GREEN[3] = {80, 220, 80},
                               RED[3] = {255, 90, 90};
    if (caption && caption[0]) draw_text(&cv, PAD, PAD, caption, WHITE, 2, cv.w - 2 * PAD);
    /* row labels, centred on each row of images */
    int y = cap_h;
    for (int r = 0; r < 3; r++) {
        draw_text(&cv, PAD, y + ih / 2 - GH / 2, rows[r], GREY, 1, lw - PAD);
        y += row_h[r];
    }
    for (int i = 0; i < k->n; i++) {
        const float *x = k->x + (size_t)i * D, *xa = k->x_adv + (size_t)i * D;
        for (int j = 0; j < D; j++) pert[j] = scale > 0 ? (float)(0.5 + 0.5 * (xa[j] - x[j]) / scale) : 0.5f;
        int x0 = lw + i * cw;
        char nm[40], buf[48];
        y = cap_h;
        draw_image(&cv, x0, y, x, C, H, W, S);
        class_name(class_names, k->y[i], nm, sizeof nm);
        snprintf(buf, sizeof buf, "y %s", nm);
        draw_text(&cv, x0, y + ih + 2, buf, WHITE, 1, iw);
        class_name(class_names, k->pred_clean[i], nm, sizeof nm);
        snprintf(buf, sizeof buf, "p %s", nm);
        draw_text(&cv, x0, y + ih + 2 + TXT, buf, k->pred_clean[i] == k->y[i] ? GREEN : RED, 1, iw);
        y += row_h[0];
        draw_image(&cv, x0, y, pert, C, H, W, S);
        y += row_h[1];
        draw_image(&cv, x0, y, xa, C, H, W, S);
        class_name(class_names, k->pred_adv[i], nm, sizeof nm);
        snprintf(buf, sizeof buf, "p %s", nm);
        draw_text(&cv, x0, y + ih + 2, buf, k->pred_adv[i] == k->y[i] ? GREEN : RED, 1, iw);
    }
    int rc = png_write(path, cv.pix, cv.w, cv.h, 3);
    free(pert);
    free(cv.pix);
    return rc;
}
