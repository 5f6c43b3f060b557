/* png.c -- PNG decode (validated, never aborts) and encode, through libpng.
 * libpng reports errors by calling an error function that must not return; ours records the message
 * and longjmps back to the setjmp in the caller (libpng manual, "Setting up error handling"), so a
 * corrupt file becomes a one-line message, never a crash or an abort.
 * Decoding always yields 8-bit grey (1 channel) or RGB (3 channels): palettes are expanded, 1/2/4-bit
 * grey widened, 16-bit samples scaled to 8 bits (png_set_scale_16: round(v*255/65535)), and any alpha
 * channel (or tRNS transparency) is dropped, not composited.
 */
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "datasets/formats.h"
#include "datasets/png.h"

typedef struct PngCtx {
    char msg[200];
    const unsigned char *buf;
    size_t len, pos;
} PngCtx;

static void on_png_error(png_structp png, png_const_charp msg) {
    PngCtx *c = png_get_error_ptr(png);
    if (c && !c->msg[0]) snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}
static void on_png_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void on_png_read(png_structp png, png_bytep dst, png_size_t n) {
    PngCtx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) png_error(png, "unexpected end of file (truncated)");
    memcpy(dst, c->buf + c->pos, n);
    c->pos += n;
}

int png_decode_mem(const unsigned char *buf, size_t len, const char *what, PngImage *img) {
    memset(img, 0, sizeof *img);
    if (len < 8 || png_sig_cmp(buf, 0, 8) != 0)
        return err_set("%s: not a PNG file (bad signature); remove it or convert it to PNG", what);
    /* Walk the chunk list first: with the whole file in memory, no chunk may claim more bytes than remain.
     * libpng treats an oversized ancillary chunk as a benign error (a warning when reading) and would then
     * allocate whatever its length field says (found by fuzzing: a 1.9 GB zTXt in a 109-byte file). */
    for (size_t at = 8; at < len;) {
        if (len - at < 12)
            return err_set("%s: corrupt PNG (truncated: the file ends inside a chunk header); re-create the file "
                           "or remove it", what);
        uint32_t n = (uint32_t)buf[at] << 24 | (uint32_t)buf[at + 1] << 16 | (uint32_t)buf[at + 2] << 8 | buf[at + 3];
        char name[5];
        for (int i = 0; i < 4; i++) {
            unsigned char ch = buf[at + 4 + i];
            name[i] = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ? (char)ch : '?';
        }
        name[4] = 0;
        if (n > 0x7fffffffu || n > len - at - 12)
            return err_set("%s: corrupt PNG (truncated: chunk %s claims %u bytes but only %zu remain); re-create "
                           "the file or remove it", what, name, n, len - at - 12);
        if (memcmp(buf + at + 4, "IEND", 4) == 0) break;
        at += 12 + (size_t)n;
    }
    PngCtx ctx = {.buf = buf, .len = len, .pos = 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_png_error, on_png_warning);
    if (!png) return err_set("%s: cannot create a libpng reader (out of memory?)", what);
    png_infop info = png_create_info_struct(png);
    /* Locals changed after setjmp and used after the longjmp must be volatile (C11 7.13.2.1). */
    unsigned char *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return err_set("%s: cannot create a libpng reader (out of memory?)", what);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(rows);
        return err_set("%s: corrupt PNG (libpng: %s); re-create the file or remove it", what,
                       ctx.msg[0] ? ctx.msg : "error");
    }
    png_set_read_fn(png, &ctx, on_png_read);
    png_set_user_limits(png, DATASET_MAX_SIDE, DATASET_MAX_SIDE);
    png_set_chunk_malloc_max(png, 64u << 20);
    /* Only IHDR, PLTE, tRNS, IDAT and IEND matter (no gamma or colour management is applied): skip every
     * other chunk unread (num_chunks < 0 covers all known ancillary chunks too; libpng manual). */
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    /* Deflate expands at most 1032:1, so a file of len bytes cannot hold more than ~1032*len bytes of
     * image data: reject a header that claims more before allocating for it (truncated or hostile). */
    if ((uint64_t)h * png_get_rowbytes(png, info) > 1100u * (uint64_t)len + 4096u)
        png_error(png, "the header's image size is larger than the file can hold (truncated image data)");
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_scale_16(png);
    /* tRNS makes the palette expansion produce RGBA, so strip alpha in that case too */
    if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    if (png_get_bit_depth(png, info) != 8 || (ch != 1 && ch != 3))
        png_error(png, "unsupported pixel layout after conversion");
    int64_t total;
    if (mul_capped((int64_t)w * h, ch, DATASET_MAX_VALUES, &total) != 0)
        png_error(png, "image too large");
    size_t rowbytes = png_get_rowbytes(png, info);
    CHECK(rowbytes == (size_t)w * (size_t)ch);
    pix = xmalloc((size_t)total);
    rows = xmalloc(sizeof(png_bytep) * h);
    for (png_uint_32 r = 0; r < h; r++) rows[r] = pix + (size_t)r * rowbytes;
    png_read_image(png, rows);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    img->w = (int)w;
    img->h = (int)h;
    img->channels = ch;
    img->pix = pix;
    return 0;
}

int png_read_file(const char *path, PngImage *img) {
    memset(img, 0, sizeof *img);
    unsigned char *buf;
    size_t len;
    if (file_read_all(path, (size_t)1 << 30, &buf, &len) != 0) return -1;
    int rc = png_decode_mem(buf, len, path, img);
    free(buf);
    return rc;
}

static int png_write_to(const char *path, const char *shown, const unsigned char *pix, int w, int h,
                        int channels) {
    CHECK(pix && w > 0 && h > 0 && channels >= 1 && channels <= 4);
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                 PNG_COLOR_TYPE_RGB_ALPHA};
    FILE *volatile f = fopen(path, "wb");
    if (!f) return err_set("%s: cannot create: %s; check the directory exists and is writable", shown,
                           strerror(errno));
    PngCtx ctx = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        remove(path);
        return err_set("%s: cannot create a libpng writer (out of memory?)", shown);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(path);
        return err_set("%s: cannot write PNG (libpng: %s); check free disk space", shown,
                       ctx.msg[0] ? ctx.msg : "error");
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, types[channels], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int r = 0; r < h; r++) png_write_row(png, (png_const_bytep)(pix + (size_t)r * w * channels));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        remove(path);
        return err_set("%s: write error: %s; check free disk space", shown, strerror(errno));
    }
    return 0;
}

int png_write_direct(const char *path, const unsigned char *pix, int w, int h, int channels) {
    return png_write_to(path, path, pix, w, h, channels);
}

int png_write(const char *path, const unsigned char *pix, int w, int h, int channels) {
    char tmp[4096];
    tmp_path(path, tmp, sizeof tmp);
    if (png_write_to(tmp, path, pix, w, h, channels) != 0) return -1;
    return file_commit(tmp, path);
}
