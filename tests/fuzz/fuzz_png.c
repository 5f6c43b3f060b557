/* fuzz_png.c -- libFuzzer target for the PNG decoder (datasets/png.c): libpng errors must come back
 * as messages, never crash, abort or leak.
 */
#include <stdint.h>
#include <stdlib.h>

#include "../../datasets/formats.h"
#include "../../harness/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    PngImage im;
    err_clear();
    if (png_decode_mem(data, size, "fuzz.png", &im) == 0) {
        CHECK(im.w > 0 && im.h > 0 && (im.channels == 1 || im.channels == 3) && im.pix);
        unsigned sum = 0; /* touch every byte so ASan/MSan see any short allocation */
        for (size_t i = 0; i < (size_t)im.w * im.h * im.channels; i++) sum += im.pix[i];
        (void)sum;
        free(im.pix);
    } else {
        CHECK(err_msg()[0] && im.pix == NULL);
    }
    return 0;
}
