/* fuzz_idx.c -- libFuzzer target for the IDX parser and the images+labels pairing (datasets/idx.c).
 * Input: byte 0 picks where the images file ends and the labels file begins, byte 1 the EMNIST options
 * (bit 0: 1-based labels, bit 1: transposed); the rest is the two files back to back.
 */
#include <stdint.h>
#include <stdlib.h>

#include "datasets/formats.h"
#include "harness/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const unsigned char *p = data + 2;
    size_t n = size - 2, cut = (size_t)data[0] * n / 255;
    IdxArray img, lab;
    err_clear();
    if (idx_parse_mem(p, cut, "fuzz-images", &img) != 0) return 0;
    err_clear();
    if (idx_parse_mem(p + cut, n - cut, "fuzz-labels", &lab) != 0) return 0;
    Dataset d;
    err_clear();
    if (idx_make_dataset(&img, "fuzz-images", &lab, "fuzz-labels", 10, data[1] & 1, (data[1] >> 1) & 1, &d) == 0) {
        CHECK(d.n > 0 && d.x && d.y);
        for (int i = 0; i < d.n; i++) CHECK(d.y[i] >= 0 && d.y[i] < d.classes);
        dataset_close(&d);
    } else {
        CHECK(err_msg()[0] && d.x == NULL);
    }
    return 0;
}
