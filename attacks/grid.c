/* grid.c -- adversarial-example grids as RGB PNG (through datasets/png.h): one column per example;
 * rows clean, perturbation (x_adv - x mapped from [-eps, eps] to [0, 1], grey = unchanged), adversarial.
 * Text under the clean image: "y<label> p<prediction>"; under the adversarial one: "p<prediction>";
 * predictions are green when correct and red when wrong. A 3x5 bitmap font drawn at 2x. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/png.h"
#include "attacks/attack.h"

/* 3x5 glyphs, one row per entry, bit 2 = left column */
static const unsigned char FONT[12][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
    {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 2, 2}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
    {5, 5, 7, 1, 6}, /* y */ {7, 5, 7, 4, 4},   /* p */
};
enum { FS = 2, GLYPH_W = 3 * FS + 2, STRIP = 5 * FS + 4, PAD = 4 };

typedef struct Canvas { unsigned char *pix; int w, h; } Canvas;

static void put(Canvas *cv, int x, int y, const unsigned char rgb[3]) {
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
    memcpy(cv->pix + ((size_t)y * cv->w + x) * 3, rgb, 3);
}

static int glyph_index(char ch) { return ch >= '0' && ch <= '9' ? ch - '0' : ch == 'y' ? 10 : ch == 'p' ? 11 : -1; }

static int draw_text(Canvas *cv, int x, int y, const char *s, const unsigned char rgb[3]) {
    for (; *s; s++, x += GLYPH_W) {
        int g = glyph_index(*s);
        if (g < 0) continue; /* space */
        for (int r = 0; r < 5; r++)
            for (int c = 0; c < 3; c++)
                if (FONT[g][r] & (4 >> c))
                    for (int dy = 0; dy < FS; dy++)
                        for (int dx = 0; dx < FS; dx++) put(cv, x + c * FS + dx, y + r * FS + dy, rgb);
    }
    return x;
}

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

int attack_grid_png(const char *path, const AttackKeep *k, int C, int H, int W, double eps) {
    if (k->n <= 0) return err_set("%s: no examples to draw", path);
    if (C != 1 && C != 3) return err_set("%s: grids need 1- or 3-channel images, not %d", path, C);
    const int D = C * H * W, big = H > W ? H : W;
    const int S = big >= 96 ? 1 : 96 / big;
    const int cw = S * W + PAD, ch = S * H;
    Canvas cv = {NULL, cw * k->n + PAD, PAD + (ch + STRIP) + (ch + PAD) + (ch + STRIP)};
    cv.pix = xmalloc((size_t)cv.w * cv.h * 3);
    memset(cv.pix, 40, (size_t)cv.w * cv.h * 3);
    float *pert = xmalloc(sizeof(float) * D);
    double scale = eps;
    if (!(scale > 0)) { /* eps 0: show whatever changed, at full contrast */
        scale = 0;
        for (long j = 0; j < (long)k->n * D; j++) {
            double dv = fabs((double)k->x_adv[j] - k->x[j]);
            if (dv > scale) scale = dv;
        }
    }
    static const unsigned char WHITE[3] = {230, 230, 230}, GREEN[3] = {60, 220, 60}, RED[3] = {255, 70, 70};
    for (int i = 0; i < k->n; i++) {
        const float *x = k->x + (size_t)i * D, *xa = k->x_adv + (size_t)i * D;
        for (int j = 0; j < D; j++) pert[j] = scale > 0 ? (float)(0.5 + 0.5 * (xa[j] - x[j]) / scale) : 0.5f;
        int x0 = PAD + i * cw, y = PAD;
        char buf[32];
        draw_image(&cv, x0, y, x, C, H, W, S);
        y += ch + 2;
        snprintf(buf, sizeof buf, "y%d ", (int)k->y[i]);
        int tx = draw_text(&cv, x0, y, buf, WHITE);
        snprintf(buf, sizeof buf, "p%d", (int)k->pred_clean[i]);
        draw_text(&cv, tx, y, buf, k->pred_clean[i] == k->y[i] ? GREEN : RED);
        y += STRIP - 2;
        draw_image(&cv, x0, y, pert, C, H, W, S);
        y += ch + PAD;
        draw_image(&cv, x0, y, xa, C, H, W, S);
        y += ch + 2;
        snprintf(buf, sizeof buf, "p%d", (int)k->pred_adv[i]);
        draw_text(&cv, x0, y, buf, k->pred_adv[i] == k->y[i] ? GREEN : RED);
    }
    int rc = png_write(path, cv.pix, cv.w, cv.h, 3);
    free(pert);
    free(cv.pix);
    return rc;
}
