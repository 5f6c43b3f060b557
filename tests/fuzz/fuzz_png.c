/* fuzz_png.c -- libFuzzer target for the PNG decoder (datasets/png.c): libpng errors must come back
 * as messages, never crash, abort or leak.
 * A mutated chunk almost always fails its CRC, which stops libpng at once; so unless the input's last
 * byte is 0, the target first rewrites every chunk's CRC to match, letting the fuzzer reach the
 * decompression and row-transform code. (CRC failures themselves are covered by the unit tests.)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "datasets/formats.h"
#include "harness/core.h"

static void fix_crcs(unsigned char *b, size_t n) {
    size_t at = 8;
    while (at + 12 <= n) {
        uint32_t len = (uint32_t)b[at] << 24 | (uint32_t)b[at + 1] << 16 | (uint32_t)b[at + 2] << 8 | b[at + 3];
        if (len > n - at - 12) break;
        uint32_t crc = (uint32_t)crc32(0, b + at + 4, 4 + len);
        unsigned char *c = b + at + 8 + len;
        c[0] = (unsigned char)(crc >> 24); c[1] = (unsigned char)(crc >> 16);
        c[2] = (unsigned char)(crc >> 8); c[3] = (unsigned char)crc;
        at += 12 + len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    unsigned char *b = malloc(size);
    memcpy(b, data, size);
    if (data[size - 1] != 0) fix_crcs(b, size);
    PngImage im;
    err_clear();
    if (png_decode_mem(b, size, "fuzz.png", &im) == 0) {
        CHECK(im.w > 0 && im.h > 0 && (im.channels == 1 || im.channels == 3) && im.pix);
        unsigned sum = 0; /* touch every byte so ASan sees any short allocation */
        for (size_t i = 0; i < (size_t)im.w * im.h * im.channels; i++) sum += im.pix[i];
        (void)sum;
        free(im.pix);
    } else {
        CHECK(err_msg()[0] && im.pix == NULL);
    }
    free(b);
    return 0;
}
