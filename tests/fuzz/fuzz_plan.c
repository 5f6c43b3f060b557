/* fuzz_plan.c -- libFuzzer target for the plan-file reader (harness/suite/planfile.c), the file every
 * `concord job` trusts with a command line to exec: it either reads a plan whose every job is complete
 * (its kind's options present, dependencies earlier) or refuses it in one line naming the file.
 * The input is the plan file (written to a temporary file first).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/core.h"
#include "harness/suite/suite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz-plan-%ld.tsv", (long)getpid());
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, size, f) == size && fclose(f) == 0);
    SuitePlan p;
    err_clear();
    if (suite_plan_read(path, &p) != 0) {
        CHECK(err_msg()[0] && !strchr(err_msg(), '\n') && strncmp(err_msg(), path, strlen(path)) == 0);
        CHECK(p.n == 0 && p.jobs == NULL);
        return 0;
    }
    for (int i = 0; i < p.n; i++) {
        const SuiteJob *j = &p.jobs[i];
        CHECK(j->argc > 0 && j->argv[j->argc] == NULL && str_eq(j->argv[0], suite_job_kind_name(j->kind)));
        for (int d = 0; d < j->ndeps; d++) CHECK(j->deps[d] >= 0 && j->deps[d] < i);
        char **keys;
        int nk = suite_job_row_keys(j, &keys);
        CHECK(nk >= 1);
        for (int k = 0; k < nk; k++) free(keys[k]);
        free(keys);
    }
    suite_plan_free(&p);
    return 0;
}
