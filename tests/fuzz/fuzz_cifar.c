/* fuzz_cifar.c -- libFuzzer target for the CIFAR binary parser (datasets/cifar.c).
 * Input: byte 0 picks CIFAR-10 / CIFAR-100 fine / CIFAR-100 coarse; the rest is one batch file.
 */
#include <stdint.h>
#include <stdlib.h>

#include "datasets/formats.h"
#include "harness/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    Dataset d;
    err_clear();
    if (cifar_parse_mem(data + 1, size - 1, "fuzz.bin", data[0] % 3, &d) == 0) {
        for (int i = 0; i < d.n; i++) CHECK(d.y[i] >= 0 && d.y[i] < d.classes);
        for (long i = 0; i < (long)d.n * 3072; i++) CHECK(d.x[i] >= 0.0f && d.x[i] <= 1.0f);
        dataset_close(&d);
    } else {
        CHECK(err_msg()[0] && d.x == NULL);
    }
    return 0;
}
